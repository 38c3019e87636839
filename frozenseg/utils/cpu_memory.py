"""Keep freed memory for reuse in CPU processes (MODEL.CPU_REUSE_FREED_MEMORY).

glibc's ``malloc`` serves every allocation above its mmap threshold (128 KiB, rising with use to
at most 32 MiB) with fresh pages from the kernel and hands them back when the block is freed.
Inference allocates and frees tens of tensors of 10–200 MiB per image, so each of them is
page-faulted in, zero-filled by the kernel, then unmapped again: on the 2-core development
machine one SAM vit_b forward at 1024² took ~480 000 minor page faults and ~1 s of kernel time,
and ran in 5.8 s instead of 5.1 s (same process, same arithmetic).

:func:`reuse_freed_memory` raises glibc's mmap and trim thresholds (``mallopt``) to their
largest value, so freed blocks stay in the process's heap and the next tensors reuse them
without faults. The arithmetic, and therefore every output, is unchanged. The cost is that the
process keeps its peak memory (freed memory is reused, not returned to the system), which is
what a long inference or training process does anyway after its first image or iteration.
Elsewhere than glibc on Linux it does nothing.
"""

from __future__ import annotations

import ctypes
import logging
import sys

__all__ = ["reuse_freed_memory"]

logger = logging.getLogger(__name__)

#: ``mallopt`` parameters (glibc's <malloc.h>).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: The largest value ``mallopt`` takes (a C int): blocks up to 2 GiB come from the heap.
LARGEST_THRESHOLD = 2**31 - 1


def reuse_freed_memory() -> bool:
    """Make glibc keep freed memory in the heap for reuse (see the module docstring).

    Returns:
        True when glibc accepted both thresholds; False on other platforms or C libraries
        (nothing is changed there).
    """
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None)  # the C library this process already uses
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
        return False
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    accepted = all(libc.mallopt(p, LARGEST_THRESHOLD) == 1 for p in (M_MMAP_THRESHOLD, M_TRIM_THRESHOLD))
    logger.info("CPU allocator: freed memory is %s (MODEL.CPU_REUSE_FREED_MEMORY)",
                "kept for reuse" if accepted else "returned to the system; glibc refused the thresholds")
    return accepted
