#!/usr/bin/env python
"""COCO-Stuff-164k label maps -> contiguous 171-class maps.

Command line of :func:`frozenseg.data.prepare.coco.convert_stuff_sem_seg` (layouts:
datasets/README.md; options: ``--help``).
"""

from frozenseg.data.prepare.coco import stuff_sem_seg_main

if __name__ == "__main__":
    stuff_sem_seg_main()
