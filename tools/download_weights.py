#!/usr/bin/env python
"""List the released weights names, or fetch weights into the cache ahead of time.

    python tools/download_weights.py                         # the names, their configs and files
    python tools/download_weights.py frozenseg_convnext_large sam_vit_b   # download and verify
    python tools/download_weights.py --path frozenseg_convnext_large      # where the file goes

A name is downloaded once into ``$FROZENSEG_CACHE/weights`` (else
``$XDG_CACHE_HOME/frozenseg/weights``, else ``~/.cache/frozenseg/weights``), resuming a cut
download, and verified (checksum where published, key layout); ``FROZENSEG_WEIGHTS_URL`` points
every name at a mirror. Offline, copy the file to the path ``--path`` prints. CLIP names are
fetched by open_clip into its own cache. The table and the rules: :mod:`frozenseg.checkpoint.zoo`.
Errors end in one sentence and exit status 2.
"""

from __future__ import annotations

import argparse
import sys

from frozenseg.checkpoint import zoo
from frozenseg.utils.errors import exit_on_user_error


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="names:\n" + "\n".join(f"  {n}" for n in zoo.RELEASED_WEIGHTS))
    ap.add_argument("names", nargs="*", metavar="NAME", help="released weights to fetch (none: list them)")
    ap.add_argument("--path", action="store_true", help="print where each NAME's file goes; fetch nothing")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    with exit_on_user_error("download_weights.py"):
        if not args.names:
            print(f"cache: {zoo.weights_dir()}")
            for entry in zoo.RELEASED_WEIGHTS.values():
                print(zoo.describe(entry))
            return 0
        for name in args.names:
            if args.path:
                print(zoo.weights_path(name))
            else:
                print(zoo.fetch(name, progress=False if args.no_progress else None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
