"""Helpers for side-by-side operator benchmarks (the plugins' ``bench/bench_*.py`` scripts).

The yardstick is each operator's physical floor, timed on the same batch in the same run: what its
physics must cost at least (:class:`Floor`: a clone for element-wise work, the random draws its
noise needs, the FFTs of its k-space or MTF model, the interpolation of a resampling). Targets
(:data:`FLOOR_TARGETS`): element-wise <= 3x a clone, noise <= 1.5x its draws, FFT-based <= 3x its
FFTs, resampling <= 3x its interpolation; and never slower than a peer doing the same physics
(``Peer(same_physics=True)``). Other peers are listed for reference.

Timing: :func:`median_seconds` (wall clock, ``sync`` before each read so GPU work is counted) and
:func:`time_operator` (an operator's ``apply`` alone and sampling + apply, from the same repeats).
Peers: :class:`Peer` wraps one transform of another library; :func:`load_image_peers` imports
Albumentations, imagecorruptions and MedMNIST-C where installed (a missing one is reported on
stderr and left out); :func:`warm_peer` runs one untimed call and reports a failure. Each printed
row carries the 1-minute load average (:func:`load_average`), so a loaded machine shows. Nothing
here is imported by the rest of c3-core, and no peer library is imported at module import.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

FLOOR_TARGETS: dict[str, float] = {"element-wise": 3.0, "noise": 1.5, "fft": 3.0, "resample": 3.0}
"""Most an operator's ``apply`` may cost, as a multiple of its floor, by floor kind."""


@dataclass(frozen=True)
class Floor:
    """What an operator's physics must cost at least, timed beside it on the same batch.

    ``kind`` (a key of :data:`FLOOR_TARGETS`) sets the target; ``what`` says the work in words
    ("a clone", "2 normal draws per voxel", "rfftn + irfftn"). ``work(state)`` is the timed work;
    ``prepare(batch)`` makes its state outside the clock (default: the batch itself), e.g. the
    photon counts whose draws are the floor of a dose operator.
    """

    kind: str
    what: str
    work: Callable[[Any], Any]
    prepare: Callable[[Any], Any] | None = None

    def __post_init__(self) -> None:
        if self.kind not in FLOOR_TARGETS:
            raise ValueError(f"floor kind {self.kind!r} is not one of {sorted(FLOOR_TARGETS)}")

    @property
    def target(self) -> float:
        return FLOOR_TARGETS[self.kind]


def clone_floor() -> Floor:
    """Element-wise work: one read and one write of the batch (``image.clone()``)."""
    return Floor("element-wise", "a clone", lambda b: b.image.clone())


def normal_floor(count: int = 1, per: str = "pixel") -> Floor:
    """Noise from ``count`` standard normal draws per element of the image."""
    import torch

    def work(b: Any) -> Any:
        g = torch.Generator(device=b.device)
        g.manual_seed(0)
        return torch.randn((count, *b.image.shape), generator=g, device=b.device, dtype=b.image.dtype)

    return Floor("noise", f"{count} normal draw{'s' if count > 1 else ''} per {per}", work)


def photon_floor(expected_counts: Callable[[Any], Any], extra_normals: int = 0, per: str = "pixel") -> Floor:
    """Photon noise: one normal draw per element of ``expected_counts(batch)`` plus exact Poisson
    draws where it is below the switch-over of :mod:`c3_core.functional.photon` (what its kernel
    needs at those counts), plus ``extra_normals`` normal draws per element (other noise)."""
    import torch

    from c3_core.functional.photon import EXACT_BELOW

    def prepare(b: Any) -> Any:
        lam = expected_counts(b)
        return lam, lam[lam < EXACT_BELOW].contiguous()

    def work(state: Any) -> Any:
        lam, low = state
        g = torch.Generator(device=lam.device)
        g.manual_seed(0)
        z = torch.randn((1 + extra_normals, *lam.shape), generator=g, device=lam.device, dtype=lam.dtype)
        return z, torch.poisson(low, generator=g)

    extra = f" + {extra_normals} normal draw{'s' if extra_normals > 1 else ''}" if extra_normals else ""
    return Floor("noise", f"1 normal per {per} + Poisson below {EXACT_BELOW:g} counts{extra}", work, prepare)


def fft_floor(axes: tuple[int, ...] | None = None) -> Floor:
    """FFT-based work: a real FFT and its inverse over the spatial ``axes`` (0-based; all by default)."""
    import torch

    def work(b: Any) -> Any:
        x = b.image
        dims = tuple(range(2, x.ndim)) if axes is None else tuple(2 + a for a in axes)
        return torch.fft.irfftn(torch.fft.rfftn(x, dim=dims), s=[x.shape[d] for d in dims], dim=dims)

    where = "" if axes is None else f" along axis {', '.join(map(str, axes))}"
    return Floor("fft", f"rfftn + irfftn{where}", work)


def resample_floor(copies: int = 1) -> Floor:
    """Resampling: ``copies`` bilinear ``grid_sample``s of the batch (grids made outside the clock),
    e.g. one per pose of a segmented-motion model."""
    import torch
    from torch.nn import functional as F

    def prepare(b: Any) -> Any:
        d = b.image.ndim - 2
        n = b.size * copies
        theta = torch.eye(d, d + 1, dtype=b.image.dtype, device=b.device).expand(n, d, d + 1).clone()
        theta[:, 0, d] = 0.01  # a small shift: real interpolation, not a copy
        image = b.image.repeat_interleave(copies, 0) if copies > 1 else b.image
        return image, F.affine_grid(theta, [n, *b.image.shape[1:]], align_corners=False)

    def work(state: Any) -> Any:
        image, grid = state
        return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)

    what = "one bilinear grid_sample" if copies == 1 else f"{copies} bilinear grid_samples (one per pose)"
    return Floor("resample", what, work, prepare)


@dataclass(frozen=True)
class Peer:
    """One peer transform: ``fn`` maps one input of kind ``kind`` ("u8", "f32", "pil", or a script's own
    kind) to its output. ``same_physics``: it models the same physics (ours must not be slower).
    ``view`` maps an input or output to an array for the warm-up's unchanged check (default: itself)."""

    library: str
    name: str
    kind: str
    fn: Callable[[Any], Any]
    same_physics: bool = False
    view: Callable[[Any], Any] | None = None


@dataclass(frozen=True)
class Row:
    """One compared operator: ours (op, severity in its physical units), its floor and its peers."""

    name: str
    ours: Any  # a c3 Operator
    severity: float
    peers: list[Peer] = field(default_factory=list)
    note: str = ""
    floor: Floor | None = None


def admissible(op: Any, wanted: float) -> float:
    """``wanted`` clamped into ``op``'s admissible severity range (ranges are narrowed as sources are cited)."""
    return min(max(float(wanted), op.severity.low), op.severity.high)


def load_average() -> str:
    """The 1-minute load average as "1.23" ("-" where the platform has none)."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except (OSError, AttributeError):
        return "-"


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


def _ms(seconds: float) -> str:
    """Seconds as milliseconds: one decimal from 1 ms, three significant digits below."""
    ms = seconds * 1e3
    return f"{ms:.1f}" if ms >= 1 else f"{ms:.3g}"


def format_ratio(ratio: float) -> str:
    """A ratio as "12x", "3.4x" or "0.05x" (two significant digits below 10)."""
    return f"{ratio:.0f}x" if ratio >= 10 else f"{ratio:.2g}x"


def operator_bench_arguments(
    doc: str | None, quick: str, device: str = "torch device for ours and the floors", only: str = ""
) -> argparse.ArgumentParser:
    """The options every operator benchmark takes: ``--quick`` (``quick`` says its input),
    ``--repeats`` (median of N, default 3), ``--only`` (row names by substring; ``only`` adds to its
    help) and ``--device`` (``device`` says what runs there). The description is ``doc``'s first line."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    ap.add_argument("--quick", action="store_true", help=f"{quick}, 1 repeat (smoke run)")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats per measurement (median)")
    ap.add_argument("--only", default="", help="comma-separated row names (substring match) to run" + only)
    ap.add_argument("--device", default="cpu", help=device)
    return ap


def print_verdicts(verdicts: list[str], started: float) -> None:
    """Print each verdict line, how many targets failed, and the run's wall time (since
    ``started``, a ``time.perf_counter()`` reading) with the load average: every benchmark's last lines."""
    import time

    failed = sum(v.startswith("FAIL") for v in verdicts)
    for v in verdicts:
        print(v)
    print(f"{failed} target(s) failed" if failed else "all targets met")
    print(f"total {time.perf_counter() - started:.0f} s; load average {load_average()} at the end")


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
    peer_target: float = 1.0,
    name_width: int = 14,
    peer_width: int = 44,
) -> list[str]:
    """Time every row on every batch (``{n: Batch of n cases}``) beside its floor and its peers.

    Prints one line per row (ours apply, sampling + apply, the floor's time and what it is, apply /
    floor, the 1-minute load) and one per peer (its time for the first ``n`` of
    ``images[peer.kind]``, one call each, and peer / ours s+a). Returns PASS / FAIL lines: apply /
    floor against the floor kind's target, and ours s+a at least ``peer_target`` times as fast as
    every same-physics peer.
    """
    header = (f"{'setting':<7} {'operator':<{name_width}} {'apply':>8} {'s+a':>8} {'floor':>8} {'ratio':>6} "
              f"{'target':>7}  {'floor work':<56} {'load':>5}")  # fmt: skip
    print(header)
    print("-" * len(header))
    verdicts: list[str] = []
    for n, batch in batches.items():
        setting = "single" if n == 1 else f"B={n}"
        for r in rows:
            apply_s, sa_s = time_operator(r.ours, batch, r.severity, repeats, sync)
            floor_s = None
            if r.floor is not None:
                fl = r.floor
                state = batch if fl.prepare is None else fl.prepare(batch)
                fl.work(state)  # warm-up
                floor_s = median_seconds(lambda fl=fl, st=state: fl.work(st), repeats, sync)
            ratio = "" if floor_s is None else format_ratio(apply_s / floor_s)
            target = "" if r.floor is None else f"<={r.floor.target:g}x"
            what = "(no floor declared)" if r.floor is None else f"{r.floor.kind}: {r.floor.what}"
            floor_ms = "-" if floor_s is None else _ms(floor_s)
            print(f"{setting:<7} {r.name:<{name_width}} {_ms(apply_s):>8} {_ms(sa_s):>8} {floor_ms:>8} {ratio:>6} "
                  f"{target:>7}  {what:<56} {load_average():>5}", flush=True)
            if floor_s is not None and r.floor is not None:
                ok = apply_s <= r.floor.target * floor_s
                verdicts.append(f"{'PASS' if ok else 'FAIL'}  {r.name}, {setting}: apply {_ms(apply_s)} ms = "
                                f"{format_ratio(apply_s / floor_s)} its floor ({r.floor.what}, {_ms(floor_s)} ms); "
                                f"target <= {r.floor.target:g}x ({r.floor.kind})")  # fmt: skip
            for peer in r.peers:
                label = f"{peer.library} {peer.name}" + (" [same physics]" if peer.same_physics else "")
                imgs = images[peer.kind]
                problem = warm_peer(peer, imgs[0])
                lead = f"{'':<7}   peer {label:<{peer_width}}"
                if problem is not None:
                    print(f"{lead} {problem}", flush=True)
                    continue
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    peer_s = median_seconds(lambda p=peer, xs=imgs[:n]: [p.fn(x) for x in xs], repeats, lambda: None)
                speedup = peer_s / sa_s
                print(f"{lead} {peer_s * 1e3:>9.1f} ms  {format_ratio(speedup):>6} ours s+a {load_average():>5}", flush=True)
                if peer.same_physics:
                    ok = speedup >= peer_target
                    verdicts.append(f"{'PASS' if ok else 'FAIL'}  {r.name}, {setting}: {format_ratio(speedup)} as fast as "
                                    f"{peer.library} {peer.name} (same physics, {peer_s * 1e3:.1f} ms / ours s+a "
                                    f"{sa_s * 1e3:.1f} ms); target >= {peer_target:g}x")  # fmt: skip
            if not r.peers:
                print(f"{'':<7}   (no peer run: none installed, or no library does this physics)")
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
    view = peer.view or (lambda v: v)
    a, b = np.asarray(view(out)), np.asarray(view(image))
    if a.shape == b.shape and np.array_equal(a, b):
        print(f"warning: {peer.library} {peer.name} left the image unchanged", file=sys.stderr)
    return None
