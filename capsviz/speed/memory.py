"""Keep freed memory in the process while training on the CPU (Linux with glibc only).

Freed blocks of tens of megabytes (the votes and their gradient) would otherwise go back to
the kernel and be page-faulted in again, zeroed, every step; raising malloc's mmap and trim
thresholds keeps them for reuse, as PyTorch's caching allocator does on CUDA (how glibc
behaves and how the reset works: docs/architecture.md).

    with retained_memory() as kept:   # what FastPath.retained_memory(cpu) enters around training
        ...                           # kept: whether the setting is in effect

Process-wide: nested and concurrent users are counted, and the last one out trims the heap
and resets the thresholds. Elsewhere (macOS, Windows, musl) it does nothing and yields False.
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
