#!/usr/bin/env python
"""LVIS v1 categories -> a vocabulary file with cleaned synonyms (the opt-in LVIS vocabulary).

Command line of :func:`frozenseg.data.prepare.lvis.convert` (layouts:
datasets/README.md; options: ``--help``).
"""

from frozenseg.data.prepare.lvis import main

if __name__ == "__main__":
    main()
