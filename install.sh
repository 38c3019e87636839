#!/usr/bin/env bash
# Installs FrozenSeg and everything its tests need into the active Python environment:
# - the package and its pinned dependencies (requirements.txt; the editable install);
# - panopticapi-lite, lvis, cityscapesScripts and gradio without their declared dependencies
#   (their pins, e.g. numpy<2 or pillow<13, conflict with the pinned stack they work with);
# - Debian's Chromium and its driver for the web demo's browser test, through apt-get when they
#   are missing (as root, or with sudo), or one sentence saying how when that is impossible.
set -euo pipefail
cd "$(dirname "$0")"
python -m pip install -r requirements.txt -e .
python -m pip install --no-deps -r requirements-nodeps.txt
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    as_root=()
    if [ "$(id -u)" -ne 0 ]; then
        if ! command -v sudo >/dev/null; then
            echo "install.sh: chromium and chromium-driver (the web demo's browser test) are missing and this user cannot install them; run 'apt-get install -y chromium chromium-driver' as root." >&2
            exit 1
        fi
        as_root=(sudo)
    fi
    if ! command -v apt-get >/dev/null; then
        echo "install.sh: chromium and chromium-driver (the web demo's browser test) are missing and there is no apt-get; install Chromium and its ChromeDriver with this system's package manager." >&2
        exit 1
    fi
    "${as_root[@]}" apt-get update -q
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver
fi
