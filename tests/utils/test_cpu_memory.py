"""frozenseg.utils.cpu_memory: freed large blocks are reused instead of page-faulted afresh."""

from __future__ import annotations

import subprocess
import sys

import pytest

# One process per case (the setting is process-wide): 20 times, allocate, fill and free a 64 MiB
# tensor (16384 pages of 4 KiB) and count the minor page faults; print how many rounds reused
# memory (fewer than 1000 faults). glibc settles after a few rounds, and this machine's kernel
# may reclaim idle pages now and then, so the test counts rounds rather than asking for all.
_SCRIPT = """
import resource, sys, torch
from frozenseg.utils.cpu_memory import reuse_freed_memory
accepted = reuse_freed_memory() if sys.argv[1] == "on" else None
def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t = torch.ones(16 * 2**20)
    del t
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(accepted, sum(faults() < 1000 for _ in range(20)))
"""

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator is Linux-only")


def _reusing_rounds(mode: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", _SCRIPT, mode], capture_output=True, text=True, check=True)
    accepted, rounds = out.stdout.split()
    return accepted, int(rounds)


@pytest.mark.slow
def test_freed_blocks_are_reused_without_page_faults():
    accepted, rounds = _reusing_rounds("on")
    assert accepted == "True"
    assert rounds >= 5  # 14-18 of 20 measured on the development machine


@pytest.mark.slow
def test_without_it_every_large_tensor_faults_its_pages_again():
    accepted, rounds = _reusing_rounds("off")
    assert accepted == "None"
    assert rounds == 0
