#!/usr/bin/env python
"""Pascal Context -> ``pascal_ctx_d2`` (59- and 459-class label maps).

Command line of :func:`frozenseg.data.prepare.pascal.convert_ctx_sem_seg` (layouts:
datasets/README.md; options: ``--help``).
"""

from frozenseg.data.prepare.pascal import ctx_sem_seg_main

if __name__ == "__main__":
    ctx_sem_seg_main()
