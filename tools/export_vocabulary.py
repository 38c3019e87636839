#!/usr/bin/env python
"""Write a registered dataset's vocabulary as a vocabulary file (``id:name,synonym,...``).

The file lists the classes the dataset uses by default (for the benchmarks: the released
system's class strings, with the dataset's own ids), so it is a starting point for an override::

    python tools/export_vocabulary.py openvocab_ade20k_sem_seg_val --output my_ade150.txt
    # edit the synonyms, then evaluate with
    #   DATASETS.VOCABULARY_FILES '("openvocab_ade20k_sem_seg_val:my_ade150.txt",)'

Without ``--output`` the file is written to standard output.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

from frozenseg.data.builtin import export_dataset_vocabulary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dataset", help="a registered dataset name, e.g. openvocab_ade20k_panoptic_val")
    ap.add_argument("--output", default=None, help="vocabulary file to write (default: standard output)")
    args = ap.parse_args(argv)
    try:
        if args.output:
            export_dataset_vocabulary(args.dataset, args.output)
        else:
            with tempfile.TemporaryDirectory() as d:
                path = export_dataset_vocabulary(args.dataset, os.path.join(d, "vocabulary.txt"))
                with open(path, encoding="utf-8") as f:
                    sys.stdout.write(f.read())
    except KeyError as e:
        sys.stderr.write(f"{e.args[0]}\n")
        return 2
    except OSError as e:
        sys.stderr.write(f"Cannot write {args.output}: {e.strerror}; choose a writable --output path.\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
