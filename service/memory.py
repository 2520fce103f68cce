"""Handing freed memory back to the operating system after large requests.

A 40 Mpx photo is decoded, detected and aligned in many allocations below glibc's mmap threshold
(which grows, up to 32 MB, after each large block is freed), so the heap they came from stays
mapped after they are freed: the process keeps its peak size long after the last large request.
``release_free_memory`` asks glibc to return the free pages at the top and in the middle of every
arena (``malloc_trim(0)``); elsewhere (musl, macOS) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging

log = logging.getLogger(__name__)

LARGE_BODY = 1 << 20  # bytes: after a request body at least this large, freed memory is handed back


@functools.cache
def _malloc_trim():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        trim = getattr(libc, "malloc_trim", None)
    except OSError:
        return None
    if trim is not None:
        trim.argtypes = [ctypes.c_size_t]
        trim.restype = ctypes.c_int
    return trim


def release_free_memory() -> bool:
    """Return free heap pages to the OS; True when the C library could (glibc)."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
