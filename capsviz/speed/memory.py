"""Keep freed memory in the process while training on the CPU (Linux with glibc only).

A CPU training step allocates and frees tensors of tens of megabytes: the votes (B, J, N, D)
and their gradient are 94 MB at batch 128. glibc's malloc serves a block that large with a
fresh mmap and gives it back to the kernel on free, so every step page-faults the same
memory in again, each page zeroed by the kernel. Raising malloc's mmap and trim thresholds
keeps freed blocks in the heap for the next step to reuse; PyTorch's caching allocator
does the same on CUDA. `python -m capsviz.bench` times the reference both ways, so what
the setting gives is visible apart from capsviz's own changes.

    with retained_memory() as kept:   # what FastPath.retained_memory(cpu) enters around training
        ...                           # kept: whether the setting is in effect
    # on exit (of the last user) the heap is trimmed, so a long-lived process (the app)
    # returns the memory, and the thresholds are reset to the highest values glibc's own
    # dynamic adjustment reaches (mmap 32 MiB, trim 64 MiB on 64-bit): glibc cannot be put
    # back into that adjustment once a threshold has been set, so this is a reset, not a
    # restore, and it overrides MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ if set.

The setting is process-wide; nested and concurrent users (two app sessions training) are
counted, and only the last one out resets it. It helps the thread that allocates from
glibc's main arena most: a training thread of the app may be given another arena, where
blocks above 64 MB are still mapped per allocation. Elsewhere (macOS, Windows, musl) it
does nothing and says so by yielding False.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import sys
import threading
from collections.abc import Iterator

M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
M_MMAP_THRESHOLD = -3
KEEP_BYTES = 1 << 30  # blocks up to 1 GiB come from the heap; up to 1 GiB of free heap is kept
# glibc's DEFAULT_MMAP_THRESHOLD_MAX (4 MiB * sizeof(long)), and the trim threshold it pairs with it
RESET_MMAP_BYTES = 4 * 1024 * 1024 * ctypes.sizeof(ctypes.c_long)
RESET_TRIM_BYTES = 2 * RESET_MMAP_BYTES

_lock = threading.Lock()
_users = 0


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        for name in ("gnu_get_libc_version", "mallopt", "malloc_trim"):  # the first only glibc has
            getattr(libc, name)
    except (OSError, AttributeError, TypeError):
        return None
    return libc


def supported() -> bool:
    """Whether this process's C library is glibc, whose malloc `retained_memory` tunes."""
    return _glibc() is not None


@contextlib.contextmanager
def retained_memory() -> Iterator[bool]:
    """Keep freed blocks in the heap while inside; yields whether the setting is in effect."""
    global _users
    libc = _glibc()
    with _lock:
        if libc is not None and _users == 0 and not _apply(libc):
            libc = None  # a glibc that refuses the values: reset, and report False
        if libc is not None:
            _users += 1
    if libc is None:
        yield False
        return
    try:
        yield True
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                _reset(libc)


def _apply(libc: ctypes.CDLL) -> bool:
    if libc.mallopt(M_MMAP_THRESHOLD, KEEP_BYTES) == 1 and libc.mallopt(M_TRIM_THRESHOLD, KEEP_BYTES) == 1:
        return True
    _reset(libc)
    return False


def _reset(libc: ctypes.CDLL) -> None:
    libc.malloc_trim(0)
    libc.mallopt(M_MMAP_THRESHOLD, RESET_MMAP_BYTES)
    libc.mallopt(M_TRIM_THRESHOLD, RESET_TRIM_BYTES)


def users() -> int:
    """How many `retained_memory` blocks are open now (for the tests)."""
    return _users
