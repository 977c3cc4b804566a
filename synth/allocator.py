"""Keep freed memory in the process, so big tensors reuse pages instead of faulting in new ones.

Why: glibc gives every block above its mmap threshold back to the kernel when it is
freed, and trims the heap's free top beyond its trim threshold. A sampling chunk of
1,024 addresses makes a few logit and probability tensors of 9-19 MB each (the street and
house-number heads), so every chunk mapped them afresh. Sampling 8,192 records took about
85,000 page faults (about 350 MB of pages, each zeroed by the kernel), and about a sixth
of its time (docs/benchmarks.md, Performance: "freed memory kept").

`keep_freed_memory()` raises both thresholds (`mallopt`), so the blocks go back to
malloc's free lists and the next chunk takes them from there. The entry points call it
(`synth` CLI, which also runs `synth serve` and `python -m synth.train`, and the training
job's child process); a program that uses the library directly can call it too. The
price is that the process keeps up to `TRIM_BYTES` of freed memory instead of returning
it: its resident size stays at its peak, which a server reaches on its first big
request anyway.

It does nothing where it cannot act: not glibc (musl, macOS, Windows), or the user set
malloc's own environment variables (`MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`),
or `SYNTH_KEEP_FREED_MEMORY=0`.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)

# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_BYTES = 32 * 1024 * 1024  # glibc's own ceiling for the dynamic threshold on 64-bit
TRIM_BYTES = 512 * 1024 * 1024
ENV = "SYNTH_KEEP_FREED_MEMORY"
_USER_SET = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")

_done: bool | None = None


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds once per process; True when they are set."""
    global _done
    if _done is None:
        _done = _apply()
    return _done


def _apply() -> bool:
    if os.environ.get(ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    if any(k in os.environ for k in _USER_SET):
        return False  # the user tuned malloc: theirs wins
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False  # not glibc
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = mallopt(M_MMAP_THRESHOLD, MMAP_BYTES) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_BYTES) == 1
    log.debug("malloc thresholds %s", "raised" if ok else "left as they were")
    return ok
