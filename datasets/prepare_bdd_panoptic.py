#!/usr/bin/env python
"""BDD100K panoptic bitmasks -> COCO panoptic format (``bdd10k_40_panoptic_{train,val}``).

Command line of :func:`frozenseg.data.prepare.bdd.convert` (layouts:
datasets/README.md; options: ``--help``).
"""

from frozenseg.data.prepare.bdd import main

if __name__ == "__main__":
    main()
