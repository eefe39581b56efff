"""Helpers for side-by-side operator benchmarks (the plugins' ``bench/bench_*.py`` scripts).

Timing: :func:`median_seconds` (wall clock, ``sync`` before each read so GPU work is counted) and
:func:`time_operator` (an operator's ``apply`` alone and sampling + apply, from the same repeats).
Peers: :class:`Peer` wraps one transform of another library; :func:`load_image_peers` imports
Albumentations, imagecorruptions and MedMNIST-C where installed (a missing one is reported on
stderr and left out); :func:`warm_peer` runs one untimed call and reports a failure. Nothing here is
imported by the rest of c3-core, and no peer library is imported at module import.
"""

from __future__ import annotations

import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Peer:
    """One peer transform: ``fn`` maps one image of kind ``kind`` ("u8", "f32" or "pil") to its output."""

    library: str
    name: str
    kind: str
    fn: Callable[[Any], Any]


@dataclass(frozen=True)
class Row:
    """One compared operator: ours (op, severity in its physical units) and its peers."""

    name: str
    ours: Any  # a c3 Operator
    severity: float
    peers: list[Peer] = field(default_factory=list)
    note: str = ""


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (the platform's processor string elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def median_seconds(fn: Callable[[], Any], repeats: int, sync: Callable[[], None]) -> float:
    """Median wall time (s) of ``repeats`` calls of ``fn`` (``sync`` before each clock read)."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def time_operator(op: Any, batch: Any, severity: float, repeats: int, sync: Callable[[], None]) -> tuple[float, float]:
    """Median seconds of ``op.apply`` alone and of sampling + apply, from the same ``repeats`` calls.

    Case ``i`` draws its params from ``generator_from_seed(i)`` at ``severity``; one untimed call
    warms up first.
    """
    from c3_core.seeding import generator_from_seed

    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")

    def draw() -> list[Any]:
        return [op.sample_params(batch.case_info(i), generator_from_seed(i), severity) for i in range(batch.size)]

    op.apply(batch, draw())
    sync()
    apply_t, both_t = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        params = draw()
        t1 = time.perf_counter()
        op.apply(batch, params)
        sync()
        t2 = time.perf_counter()
        apply_t.append(t2 - t1)
        both_t.append(t2 - t0)
    return statistics.median(apply_t), statistics.median(both_t)


def format_ratio(ratio: float) -> str:
    """A ratio as "12x", "3.4x" or "0.05x" (two significant digits below 10)."""
    return f"{ratio:.0f}x" if ratio >= 10 else f"{ratio:.2g}x"


def load_image_peers(tag: str) -> dict[str, Any]:
    """The installed 2-D peer libraries by name: ``"Albumentations"`` and ``"imagecorruptions"``
    (modules) and ``"MedMNIST-C"`` (its corruption modules by family). ``tag`` prefixes the
    stderr lines that name a skipped library and how to install it."""
    libs: dict[str, Any] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import albumentations

            libs["Albumentations"] = albumentations
        except ImportError as exc:
            print(f"{tag}: Albumentations skipped (pip install albumentations): {exc}", file=sys.stderr)
        try:
            import imagecorruptions

            libs["imagecorruptions"] = imagecorruptions
        except ImportError as exc:  # 1.1.2 imports pkg_resources (setuptools < 81)
            print(f"{tag}: imagecorruptions skipped (pip install imagecorruptions 'setuptools<81'): {exc}", file=sys.stderr)
        try:
            import medmnistc.corruptions.compression as mc_compression
            import medmnistc.corruptions.enhance as mc_enhance
            import medmnistc.corruptions.noise as mc_noise

            libs["MedMNIST-C"] = {"noise": mc_noise, "enhance": mc_enhance, "compression": mc_compression}
            try:  # its blur module imports Wand, which needs the ImageMagick shared library
                import medmnistc.corruptions.filter as mc_filter

                libs["MedMNIST-C"]["filter"] = mc_filter
            except ImportError as exc:
                print(f"{tag}: MedMNIST-C blur skipped (needs ImageMagick's libMagickWand): {exc}", file=sys.stderr)
        except ImportError as exc:
            print(f"{tag}: MedMNIST-C skipped (pip install medmnistc): {exc}", file=sys.stderr)
    return libs


def peer_versions(libs: dict[str, Any]) -> str:
    """"Albumentations 2.0.8, imagecorruptions, MedMNIST-C 0.1.0" for the libraries in ``libs``."""
    out = ", ".join(f"{n} {getattr(m, '__version__', '')}".strip() for n, m in libs.items() if n != "MedMNIST-C")
    if "MedMNIST-C" in libs:
        from importlib.metadata import version

        out += f", MedMNIST-C {version('medmnistc')}"
    return out


def compare(
    rows: list[Row],
    batches: dict[int, Any],
    images: dict[str, list[Any]],
    repeats: int,
    sync: Callable[[], None],
    target: float,
    name_width: int = 14,
    peer_width: int = 44,
) -> list[str]:
    """Time every row on every batch (``{n: Batch of n cases}``) against its peers, printing one line per
    peer; the peers loop over the first ``n`` of ``images[peer.kind]``. Returns one PASS / FAIL line per
    row and setting: ours (sampling + apply) at least ``target`` times faster than the fastest peer."""
    clone_s = {n: median_seconds(lambda b=b: b.image.clone(), repeats, sync) for n, b in batches.items()}
    header = (f"{'setting':<7} {'operator':<{name_width}} {'ours apply':>10} {'ours s+a':>9}  "
              f"{'peer':<{peer_width}} {'peer ms':>9} {'speedup':>8}")  # fmt: skip
    print(header)
    print("-" * len(header))
    verdicts: list[str] = []
    for n, batch in batches.items():
        setting = "single" if n == 1 else f"B={n}"
        print(f"{setting:<7} {'plain clone':<{name_width}} {clone_s[n] * 1e3:>10.1f}")
        for r in rows:
            apply_s, sa_s = time_operator(r.ours, batch, r.severity, repeats, sync)
            lead = f"{setting:<7} {r.name:<{name_width}} {apply_s * 1e3:>10.1f} {sa_s * 1e3:>9.1f}  "
            best: tuple[float, str] | None = None
            for peer in r.peers:
                label = f"{peer.library} {peer.name}"
                imgs = images[peer.kind]
                problem = warm_peer(peer, imgs[0])
                if problem is not None:
                    print(f"{lead}{label:<{peer_width}} {problem}", flush=True)
                else:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        peer_s = median_seconds(lambda p=peer, xs=imgs[:n]: [p.fn(x) for x in xs], repeats, lambda: None)
                    print(f"{lead}{label:<{peer_width}} {peer_s * 1e3:>9.1f} {format_ratio(peer_s / sa_s):>8}", flush=True)
                    if best is None or peer_s < best[0]:
                        best = (peer_s, label)
                lead = " " * len(lead)
            if not r.peers:
                print(f"{lead}(no peer installed)")
            if best is not None:
                speedup = best[0] / sa_s
                verdicts.append(f"{'PASS' if speedup >= target else 'FAIL'}  {r.name}, {setting}: speedup "
                                f"{format_ratio(speedup)} over the fastest peer ({best[1]} {best[0] * 1e3:.1f} ms / "
                                f"ours s+a {sa_s * 1e3:.1f} ms); target >= {target:g}x")  # fmt: skip
    return verdicts


def warm_peer(peer: Peer, image: Any) -> str | None:
    """Run ``peer`` once (untimed); an error message if it raised (a warning on stderr if it changed nothing)."""
    import numpy as np

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = peer.fn(image)
    except Exception as exc:  # noqa: BLE001 - a peer's failure is reported, not fatal
        return f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:80] if str(exc) else ''}"
    a, b = np.asarray(out), np.asarray(image)
    if a.shape == b.shape and np.array_equal(a, b):
        print(f"warning: {peer.library} {peer.name} left the image unchanged", file=sys.stderr)
    return None
