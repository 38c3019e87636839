#!/usr/bin/env python
"""COCO panoptic -> semantic label maps (133 classes).

Command line of :func:`frozenseg.data.prepare.coco.convert_panoptic_to_sem_seg` (layouts:
datasets/README.md; options: ``--help``).
"""

from frozenseg.data.prepare.coco import panoptic_to_sem_seg_main

if __name__ == "__main__":
    panoptic_to_sem_seg_main()
