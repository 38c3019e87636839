"""frozenseg.utils.cpu_memory: freed large blocks are reused instead of page-faulted afresh."""

from __future__ import annotations

import subprocess
import sys

import pytest

# One process per case (the setting is process-wide): allocate, fill and free a 64 MiB tensor,
# then count the minor page faults of doing it again.
_SCRIPT = """
import resource, sys, torch
from frozenseg.utils.cpu_memory import reuse_freed_memory
accepted = reuse_freed_memory() if sys.argv[1] == "on" else None
def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t = torch.ones(16 * 2**20)
    del t
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults()
print(accepted, faults())
"""

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator is Linux-only")


def _second_allocation(mode: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", _SCRIPT, mode], capture_output=True, text=True, check=True)
    accepted, faults = out.stdout.split()
    return accepted, int(faults)


def test_freed_blocks_are_reused_without_page_faults():
    accepted, faults = _second_allocation("on")
    assert accepted == "True"
    assert faults < 1000  # 64 MiB are 16384 pages of 4 KiB


def test_without_it_every_large_tensor_faults_its_pages_again():
    accepted, faults = _second_allocation("off")
    assert accepted == "None"
    assert faults > 8000
