"""c3-ultrasound operators against their physical floors, side by side in one run.

Input: the package's own procedural B-mode phantoms (``c3_ultrasound.data.phantom.render_phantom``:
layers, a lesion in every other case, fully developed speckle, residual TGC and gain; case i drawn
from ``generator_from_seed(20261123 + i)``) in the envelope domain, (B, 1, H, W) float32, with the
lesion mask in ``mask``. Size: 512 x 512 px at the demo cohort's 0.3 mm pitch (15.4 cm deep and
wide, an abdominal B-mode field). ``render_phantom`` renders at any size and pitch; the demo cohort
(``data/demo.py``) renders 96 x 96 px (2.9 cm), a training thumbnail, not a scanner frame. The
pitch is kept at 0.3 mm so the speckle PSF (0.3-0.6 mm axial, 0.6-1.2 mm lateral FWHM) spans as
many pixels as on the demo. Two settings:

* **single**: one image (``apply`` on a batch of 1);
* **B=8**: ONE ``apply`` on a batch of 8 images.

Every operator runs at its extreme severity (``op.severity.extreme``, clamped by ``admissible``):
gain 9 dB, TGC slope error 3 dB/cm, speckle contrast 0.66 (K-distributed, alpha = 2).

Floors (``FLOORS`` below, one per operator id): what the operator's physics must cost at least,
timed on the same batch in the same run:

* ``us.gain``: a clone, because a receive-gain change is one multiply per pixel (read and write once);
* ``us.attenuation_tgc``: a clone, because the net depth gain is one multiply per pixel by a
  per-row factor (the B x H factors are negligible beside the H x W pixels);
* ``us.speckle``: 2 + 2 alpha standard normal draws per pixel (6 at the extreme, alpha = 2), because
  a new speckle realisation needs the real and imaginary parts of the complex Gaussian field and
  the 2 alpha Gaussian fields whose mean square is the Gamma(alpha) texture of K-distributed
  speckle (``functional/speckle.py``: ``complex_gaussian_field``, ``gamma_texture``); 2 draws
  below Rayleigh's contrast and at it, none (a clone) at 0. Its PSF smoothing is a separable
  direct convolution (``psf_filter``: ``F.conv2d`` with 1-D Gaussian taps, circular padding), not
  an FFT, so no FFT is counted: the smoothing, the amplitude law and the product are the work above
  that floor.

Targets (those of ``c3_core.benchmarking.FLOOR_TARGETS``): apply <= 3x a clone, <= 1.5x its draws.

No peer: none of the installed libraries does this physics. Albumentations has no speckle, TGC
or envelope-gain transform; imagecorruptions ``speckle_noise`` and MedMNIST-C ``SpeckleNoise``
multiply the display image by i.i.d. Gaussian noise (no PSF correlation, no Rayleigh / K law).

Helpers: ``Floor``, the clone and normal-draw floors, ``Row``, timing and the table come from
``c3_core.benchmarking``, like the plugins' benchmarks (``plugins/mri/bench/bench_mri.py``,
``plugins/cxr/bench/bench_cxr.py``); only the speckle floor, the rows and the phantom input are
specific to ultrasound.

Ours: each repeat draws the params with ``op.sample_params(case_info(i), generator_from_seed(i),
severity)``, reads the clock, then runs ``op.apply(batch, params)``: "apply" excludes the sampling
(compared with the floor), "s+a" is sampling plus apply. Every time is the median of N repeats
(``time.perf_counter``, a sync before each read) after one untimed warm-up call. Each row prints
the 1-minute load average: numbers taken on a loaded machine are not comparable.

Run: ``nox -s bench -- ultrasound`` (``--quick``: 64 x 64 images, 1 repeat, a smoke run).
Threads: ``OMP_NUM_THREADS`` (default 2) for torch. ``--device cuda`` runs ours and the floors on
a GPU (the clock is read after a sync).
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

from c3_core.benchmarking import (
    Floor,
    Row,
    admissible,
    clone_floor,
    compare,
    cpu_model,
    load_average,
    normal_floor,
    operator_bench_arguments,
    print_verdicts,
)

FULL_SIZE = 512  # px
QUICK_SIZE = 64
PIXEL_MM = 0.3  # the demo cohort's pitch, mm (axial and lateral)
K = 8  # images in the batched setting
PHANTOM_SEED = 20261123  # case i is rendered from generator_from_seed(PHANTOM_SEED + i)


def _speckle_normals(op: Any, severity: float) -> int:
    """Standard normal draws per pixel a ``us.speckle`` field needs at ``severity`` (contrast, >= 0).

    2 for the complex Gaussian (any distribution but "none"), plus ``2 * alpha`` for a K field's
    Gamma(alpha) texture (a chi-square of 2 alpha Gaussian fields). The distribution and alpha
    depend on the severity only; they are read from one case's params.
    """
    from c3_core.api import CaseInfo, generator_from_seed
    from c3_ultrasound.intensity_domains import ENVELOPE

    info = CaseInfo("floor-000", "us", ENVELOPE, (QUICK_SIZE, QUICK_SIZE), (PIXEL_MM, PIXEL_MM), 1)
    p = op.sample_params(info, generator_from_seed(0), severity)
    if p.distribution == "none":
        return 0
    return 2 + (round(2 * p.scatterers_per_cell) if p.distribution == "k" else 0)


def _speckle_floor(op: Any, severity: float) -> Floor:
    """The draws of ``us.speckle`` at ``severity``; a clone where it draws nothing (severity 0)."""
    n = _speckle_normals(op, severity)
    return normal_floor(n) if n else clone_floor()


FLOORS: dict[str, Callable[[Any, float], Floor]] = {
    # operator id -> its floor, given the operator and the severity (they fix the speckle's draws)
    "us.gain": lambda op, sev: clone_floor(),  # one multiply per pixel
    "us.attenuation_tgc": lambda op, sev: clone_floor(),  # one multiply per pixel by its row's factor
    "us.speckle": _speckle_floor,  # complex Gaussian + Gamma texture draws; its direct-convolution PSF is above it
}


def _rows() -> list[Row]:
    """The timed operators at their extreme severity, each with its floor."""
    from c3_ultrasound.operators.attenuation import AttenuationTGC
    from c3_ultrasound.operators.gain import Gain
    from c3_ultrasound.operators.speckle import Speckle

    def row(name: str, op: Any, note: str) -> Row:
        sev = admissible(op, op.severity.extreme)
        return Row(f"{name} {sev:g}", op, sev, note=note, floor=FLOORS[op.id](op, sev))

    return [
        row("gain", Gain(), "ours: amplitude x 10^(dB/20), sign drawn per case"),
        row("attenuation tgc", AttenuationTGC(), "ours: net depth gain (TGC slope - 2 alpha f) z dB, one factor per row"),
        row("speckle", Speckle(), "ours: complex Gaussian + Gamma texture fields per case, each smoothed by a separable "
                                  "Gaussian PSF (direct conv2d, circular), |Z| x sqrt(G), times the envelope"),
    ]


def _phantoms(size: int) -> tuple[Any, Any]:
    """K phantom envelopes (K, 1, size, size) and their lesion masks (every other case has a lesion)."""
    import torch

    from c3_core.api import generator_from_seed
    from c3_ultrasound.data.phantom import render_phantom

    drawn = [render_phantom(i % 2 == 1, generator_from_seed(PHANTOM_SEED + i), size, PIXEL_MM) for i in range(K)]
    return torch.stack([d.envelope for d in drawn]).contiguous(), torch.stack([d.lesion for d in drawn])


def main(argv: list[str] | None = None) -> int:
    ap = operator_bench_arguments(__doc__, "64 x 64 images")
    args = ap.parse_args(argv)
    started = time.perf_counter()

    import torch

    from c3_core.api import Batch
    from c3_ultrasound.intensity_domains import ENVELOPE

    threads = int(os.environ.get("OMP_NUM_THREADS", "2"))
    torch.set_num_threads(threads)
    device = torch.device(args.device)
    sync: Callable[[], None] = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    size = QUICK_SIZE if args.quick else FULL_SIZE
    repeats = 1 if args.quick else max(1, args.repeats)

    envelope, lesion = _phantoms(size)
    spacing = ((PIXEL_MM, PIXEL_MM),)

    def batch(n: int) -> Batch:
        return Batch(envelope[:n].clone().to(device), tuple(f"bench-{i:03d}" for i in range(n)), "us", ENVELOPE, spacing * n,
                     mask=lesion[:n].clone().to(device))

    batches = {1: batch(1), K: batch(K)}
    rows = _rows()
    if args.only:
        wanted = [w.strip() for w in args.only.split(",") if w.strip()]
        rows = [r for r in rows if any(w in r.name for w in wanted)]

    print(f"c3-ultrasound vs its floors; no peer library (none does this physics); torch {torch.__version__}, "
          f"Python {platform.python_version()}")
    print(f"CPU: {cpu_model()}, {os.cpu_count()} logical cores; threads {threads}; ours on {device}; "
          f"images 1x{size}x{size} envelope, {PIXEL_MM:g} mm ({size * PIXEL_MM / 10:.1f} cm deep); median of {repeats} "
          f"after 1 warm-up; load average {load_average()} at start"
          + ("  [QUICK: smoke run, numbers not meaningful]" if args.quick else ""))
    print("times in ms per batch; ratio = ours apply / floor")
    verdicts = compare(rows, batches, {}, repeats, sync, name_width=18, peer_width=44) if rows else []
    print("notes: " + "; ".join(f"{r.name}: {r.note}" for r in rows if r.note)
          + "; peers: none (Albumentations has no speckle, TGC or envelope gain; imagecorruptions speckle_noise and "
          "MedMNIST-C SpeckleNoise are i.i.d. multiplicative Gaussian noise on the display image).")
    print()
    print_verdicts(verdicts, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
