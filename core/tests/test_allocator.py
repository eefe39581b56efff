"""c3_core.allocator: freed memory is kept (no mmap for large tensors) unless the user chose."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from c3_core.allocator import is_glibc, keep_freed_memory, user_chose_allocator

GLIBC = is_glibc()

# a child process: the allocator is process-wide, so the test process's own is left alone
MAPPED_MIB = textwrap.dedent(
    """
    import ctypes, sys
    from c3_core.allocator import keep_freed_memory

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in
                    ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = MallInfo2
    kept = keep_freed_memory() if sys.argv[1] == "keep" else False
    import torch

    before = libc.mallinfo2().hblkhd
    x = torch.empty(64 * 2**20 // 4)  # 64 MiB, above any mmap threshold of glibc's
    print(kept, (libc.mallinfo2().hblkhd - before) >> 20)
    """
)


def _mapped(mode: str, env: dict[str, str] | None = None) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", MAPPED_MIB, mode], capture_output=True, text=True, check=True,
                         env={**os.environ, **(env or {})})
    kept, mib = out.stdout.split()
    return kept, int(mib)


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_kept_memory_serves_a_large_tensor_from_the_heap_not_a_fresh_mmap() -> None:
    assert _mapped("keep") == ("True", 0)
    kept, mib = _mapped("system")
    assert kept == "False" and mib >= 64  # glibc's default: a fresh mapping, unmapped when freed


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_a_user_setting_is_left_alone() -> None:
    kept, mib = _mapped("keep", {"MALLOC_MMAP_MAX_": "65536"})
    assert kept == "False" and mib >= 64


@pytest.mark.parametrize(
    ("env", "why"),
    [
        ({}, None),
        ({"MALLOC_TRIM_THRESHOLD_": "131072"}, "MALLOC_TRIM_THRESHOLD_ is set"),
        ({"MALLOC_MMAP_MAX_": "0"}, "MALLOC_MMAP_MAX_ is set"),
        ({"MALLOC_MMAP_THRESHOLD_": "0"}, "MALLOC_MMAP_THRESHOLD_ is set"),
        ({"MALLOC_TOP_PAD_": "0"}, "MALLOC_TOP_PAD_ is set"),
        ({"GLIBC_TUNABLES": "glibc.malloc.mmap_max=0"}, "GLIBC_TUNABLES sets glibc.malloc"),
        ({"GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX512F"}, None),
        ({"LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"}, "LD_PRELOAD loads jemalloc"),
        ({"LD_PRELOAD": "libtcmalloc_minimal.so.4"}, "LD_PRELOAD loads tcmalloc"),
        ({"LD_PRELOAD": "libasan.so"}, None),
    ],
)
def test_what_counts_as_the_users_choice(env: dict[str, str], why: str | None) -> None:
    assert user_chose_allocator(env) == why
    if why is not None:
        assert keep_freed_memory(env) is False  # nothing changed
