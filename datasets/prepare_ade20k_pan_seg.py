#!/usr/bin/env python
"""ADE20K-150 panoptic annotations (COCO panoptic format) from the instance annotations.

Command line of :func:`frozenseg.data.prepare.ade20k.convert_pan_seg` (layouts:
datasets/README.md; options: ``--help``).
"""

from frozenseg.data.prepare.ade20k import pan_seg_main

if __name__ == "__main__":
    pan_seg_main()
