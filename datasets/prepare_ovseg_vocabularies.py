#!/usr/bin/env python
"""OVSeg's class-name lists (ADE20K-847, Pascal Context 59/459, COCO-Stuff 171) from an ov-seg checkout.

Command line of :func:`frozenseg.data.prepare.ovseg.convert` (layouts:
datasets/README.md; options: ``--help``).
"""

from frozenseg.data.prepare.ovseg import main

if __name__ == "__main__":
    main()
