#!/usr/bin/env python
"""ADE20K instance annotations as COCO instance json (100 thing classes).

Command line of :func:`frozenseg.data.prepare.ade20k.convert_ins_seg` (layouts:
datasets/README.md; options: ``--help``).
"""

from frozenseg.data.prepare.ade20k import ins_seg_main

if __name__ == "__main__":
    ins_seg_main()
