#!/usr/bin/env bash
# Installs FrozenSeg and its pinned dependencies into the active Python environment.
# panopticapi-lite declares numpy<2 but works with numpy 2, so it is installed without its
# declared dependencies (they are all pinned in requirements.txt).
set -euo pipefail
cd "$(dirname "$0")"
python -m pip install -r requirements.txt -e .
python -m pip install --no-deps -r requirements-nodeps.txt
