#!/usr/bin/env python
"""Pascal VOC 2012 -> ``pascal_voc_d2`` (images and 20 / 21-class label maps).

Command line of :func:`frozenseg.data.prepare.pascal.convert_voc_sem_seg` (layouts:
datasets/README.md; options: ``--help``).
"""

from frozenseg.data.prepare.pascal import voc_sem_seg_main

if __name__ == "__main__":
    voc_sem_seg_main()
