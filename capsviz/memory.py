"""Keep freed memory in the process while training on the CPU (Linux with glibc only).

A CPU training step allocates and frees tensors of tens of megabytes: the votes (B, J, N, D)
and their gradient are 94 MB at batch 128. glibc's malloc serves a block that large with a
fresh mmap and gives it back to the kernel on free, so every step page-faults the same
memory in again, each page zeroed by the kernel. Raising malloc's mmap and trim thresholds
keeps freed blocks in the heap for the next step to reuse; PyTorch's caching allocator
does the same on CUDA. `python -m capsviz.bench` times the reference both ways, so what
the setting gives is visible apart from capsviz's own changes.

    with retained_memory():      # what FastPath.retained_memory(cpu) enters around training
        ...                      # steps reuse the heap
    # on exit (of the last user): both thresholds go back to glibc's initial 128 KiB (its
    # dynamic raising of the mmap threshold stays off) and the heap is trimmed, so a
    # long-lived process (the app) returns the memory

The setting is process-wide; nested and concurrent users (two app sessions training) are
counted, and only the last one out restores it. It helps the thread that allocates from
glibc's main arena most: a training thread of the app may be given another arena, where
blocks above 64 MB are still mapped per allocation. Elsewhere (macOS, Windows, musl) it
does nothing and says so by yielding False.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
from collections.abc import Iterator

M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
M_MMAP_THRESHOLD = -3
KEEP_BYTES = 1 << 30  # blocks up to 1 GiB come from the heap; up to 1 GiB of free heap is kept
GLIBC_DEFAULT_BYTES = 128 * 1024  # both thresholds' initial value in glibc

_lock = threading.Lock()
_users = 0


def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None)
        for name in ("gnu_get_libc_version", "mallopt", "malloc_trim"):  # the first only glibc has
            getattr(libc, name)
    except (OSError, AttributeError):
        return None
    return libc


@contextlib.contextmanager
def retained_memory() -> Iterator[bool]:
    """Keep freed blocks in the heap while inside; yields whether the setting is in effect."""
    global _users
    libc = _glibc()
    with _lock:
        if libc is not None and _users == 0 and not _apply(libc):
            libc = None  # a glibc that refuses the values: it is left as it was
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
                _restore(libc)


def _apply(libc: ctypes.CDLL) -> bool:
    if libc.mallopt(M_MMAP_THRESHOLD, KEEP_BYTES) == 1 and libc.mallopt(M_TRIM_THRESHOLD, KEEP_BYTES) == 1:
        return True
    _restore(libc)
    return False


def _restore(libc: ctypes.CDLL) -> None:
    libc.mallopt(M_MMAP_THRESHOLD, GLIBC_DEFAULT_BYTES)
    libc.mallopt(M_TRIM_THRESHOLD, GLIBC_DEFAULT_BYTES)
    libc.malloc_trim(0)


def users() -> int:
    """How many `retained_memory` blocks are open now (for tests and the app's status)."""
    return _users
