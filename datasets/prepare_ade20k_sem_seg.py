#!/usr/bin/env python
"""ADE20K-150 semantic labels -> ``annotations_detectron2`` (reduced labels).

Command line of :func:`frozenseg.data.prepare.ade20k.convert_sem_seg` (layouts:
datasets/README.md; options: ``--help``).
"""

from frozenseg.data.prepare.ade20k import sem_seg_main

if __name__ == "__main__":
    sem_seg_main()
