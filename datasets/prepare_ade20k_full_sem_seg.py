#!/usr/bin/env python
"""ADE20K-full (the ADE20K 2021_17_01 release) -> the 847-class semantic benchmark.

Command line of :func:`frozenseg.data.prepare.ade20k_full.convert` (layouts:
datasets/README.md; options: ``--help``).
"""

from frozenseg.data.prepare.ade20k_full import main

if __name__ == "__main__":
    main()
