"""Keep freed tensor memory in the process for reuse, instead of returning it to the OS.

PyTorch on the CPU takes its tensors from the C library's ``malloc``. glibc's ``malloc`` serves a
block larger than its mmap threshold (128 KiB at start, raised as blocks are freed, at most
32 MiB) with a fresh ``mmap`` and unmaps it when it is freed, and it returns the free top of its
heap to the OS once that exceeds its trim threshold. Every batch of an evaluation or a training
step allocates the same large tensors again (the (K+1)·B images, each operator's output, the
activations), so each batch pays the kernel's page faults and the zeroing of every page it
touches first. Measured on the 2-core development machine (docs/benchmarks.md): 3–6 % of the
evaluation's host work at 64 × 64 images, 12–19 % at 256 × 256, ~40 % at 512 × 512, and 38–45 % of
a fundus C³ training step at 512 px. :func:`keep_freed_memory` turns mmap off for ``malloc``
(``M_MMAP_MAX = 0``) and raises the trim threshold, so freed blocks stay in the heap and the next
batch reuses pages already mapped. The cost is memory: the process keeps what it has reached
until it exits, and blocks that once were separate mappings now share one heap (peak resident
memory the same at 64 px, 10–20 % higher at 512 px, 22–32 % higher for ``c3 evaluate`` of 48
cases of each bundled modality). That is why only the ``c3`` command line, which owns its
process, calls it. It is glibc's process-wide ``mallopt``; elsewhere (macOS, musl, Windows) it
does nothing.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Mapping

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_MAX = -4
TRIM_THRESHOLD_BYTES = 2**31 - 1  # the largest an int parameter takes: ~2 GiB of free heap top kept

#: Environment variables through which a user has chosen the allocator's behaviour already: then
#: :func:`keep_freed_memory` leaves it alone.
USER_SETTINGS = ("MALLOC_MMAP_MAX_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")
OTHER_ALLOCATORS = ("jemalloc", "tcmalloc", "mimalloc")


def user_chose_allocator(environ: Mapping[str, str]) -> str | None:
    """Why the allocator is the user's choice (a ``MALLOC_*_`` variable, glibc tunables for
    malloc, or another allocator preloaded), or None."""
    for name in USER_SETTINGS:
        if name in environ:
            return f"{name} is set"
    if "glibc.malloc." in environ.get("GLIBC_TUNABLES", ""):
        return "GLIBC_TUNABLES sets glibc.malloc"
    preload = environ.get("LD_PRELOAD", "")
    for name in OTHER_ALLOCATORS:
        if name in preload:
            return f"LD_PRELOAD loads {name}"
    return None


def is_glibc() -> bool:
    """Whether this process's C library is glibc (Linux with the GNU C library)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        return os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")  # type: ignore[union-attr]
    except (ValueError, OSError, AttributeError):
        return False


def keep_freed_memory(environ: Mapping[str, str] | None = None) -> bool:
    """Make glibc's ``malloc`` keep freed memory for reuse (see the module docstring) unless the
    user chose the allocator's behaviour (:func:`user_chose_allocator`); True when it did so.
    Process-wide and idempotent; does nothing (False) where the C library is not glibc."""
    env = os.environ if environ is None else environ
    if not is_glibc() or user_chose_allocator(env):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # mallopt returns 1 on success; the trim threshold first, so a failure leaves mmap as it was
    return bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)) and bool(mallopt(M_MMAP_MAX, 0))
