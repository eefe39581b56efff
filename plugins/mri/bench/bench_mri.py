"""c3-mri operators against their nearest TorchIO and MONAI equivalents, side by side in one run.

Input: a synthetic head-like magnitude phantom, (B, 1, 160, 192, 160) float32, 1 mm isotropic
(deterministic, from an explicit ``torch.Generator``). Two settings:

* **single**: one volume (B = 1);
* **K = 8**: ours is ONE ``apply`` on a batch of 8; TorchIO and MONAI are a Python loop of 8 calls,
  one per subject / image (how a user runs them: they work per case).

Ours: each repeat draws the params with ``op.sample_params(case_info(i), generator_from_seed(i),
severity)``, reads the clock, then runs ``op.apply(batch, params)`` (the deterministic kernel):
"ours apply" excludes the sampling, "ours s+a" is sampling plus apply of the same repeat (what
the references' calls include). TorchIO runs on a ``tio.Subject`` of one ``ScalarImage`` made
from a (C, W, H, D) torch tensor (identity affine, 1 mm), MONAI on a (C, H, W, D) torch tensor;
every reference transform has prob = 1.
TorchIO draws from torch's global RNG and MONAI from its own ``numpy.random.RandomState``: both
are seeded once here (their only APIs for it); c3 randomness comes from explicit generators.

Every time is the median of N repeats (``time.perf_counter``) after one warm-up call (for the
references' K = 8 loop, the warm-up is one call: the loop is made of the same per-case calls).
A plain ``image.clone()`` of the same batch is timed too, as the floor for element-wise work.

Targets (from the issue), printed PASS / FAIL per setting, both on "ours s+a":

* bias field and noise: ours >= 5x faster than the faster of TorchIO and MONAI;
* every element-wise operator (bias field, noise): ours <= 5x a plain copy.

Run: ``nox -s bench -- mri`` (``--quick``: a 1x32x32x32 volume and 1 repeat, a smoke run).
Threads: ``OMP_NUM_THREADS`` (default 2) for torch, and for SimpleITK (TorchIO's resampler).
Exits with status 2 and a message when TorchIO or MONAI is not installed.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from c3_core.benchmarking import cpu_model

FULL_SHAPE = (160, 192, 160)  # voxels, spatial axes 0, 1, 2
QUICK_SHAPE = (32, 32, 32)
SPACING_MM = (1.0, 1.0, 1.0)
K = 8  # cases in the batched setting
SPEEDUP_TARGET = 5.0  # ours at least this many times faster than the faster reference
COPY_TARGET = 5.0  # element-wise ops at most this many times a plain clone
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


@dataclass(frozen=True)
class Row:
    """One compared operator: ours (op, severity) and the reference transforms (None: no equivalent)."""

    name: str
    ours: Any  # a c3 Operator
    severity: float  # in the operator's physical units
    torchio: Any | None
    monai: Any | None
    elementwise: bool = False




def _phantom(n: int, shape: tuple[int, ...], generator: Any) -> Any:
    """``n`` head-like magnitude volumes (n, 1, *shape) float32, values ~0..1, from ``generator``.

    An ellipsoidal head (scalp/CSF shell 0.35, brain 0.8, an inner "ventricle" 0.3), a smooth
    per-case gain and 1 % Gaussian texture inside the head; background 0.
    """
    import torch

    axes = [torch.linspace(-1.0, 1.0, s) for s in shape]
    z, y, x = torch.meshgrid(*axes, indexing="ij")
    r = (z / 0.85) ** 2 + (y / 0.9) ** 2 + (x / 0.8) ** 2
    head = (r < 1.0).float()
    brain = (r < 0.8).float()
    ventricle = ((z / 0.2) ** 2 + (y / 0.35) ** 2 + (x / 0.15) ** 2 < 1.0).float()
    base = 0.35 * head + 0.45 * brain - 0.5 * ventricle * brain
    gains = 0.9 + 0.2 * torch.rand(n, generator=generator)
    texture = 0.01 * torch.randn((n, 1, *shape), generator=generator)
    return ((base * gains.view(n, 1, 1, 1, 1)) + texture * head).clamp_min(0.0).contiguous()


def _median_seconds(fn: Callable[[], Any], repeats: int, warm: Callable[[], Any] | None = None) -> float:
    """Median wall time (s) of ``repeats`` calls of ``fn`` after one warm-up call (``warm`` or ``fn``)."""
    (warm or fn)()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _time_ours(op: Any, batch: Any, severity: float, repeats: int) -> tuple[float, float]:
    """Median seconds of ``op.apply`` alone and of sampling + apply, from the same ``repeats`` calls.

    Each repeat draws the B params (``sample_params`` with ``generator_from_seed(i)`` per case),
    reads the clock, then applies them: apply = t2 - t1 (sampling outside its timed region),
    sample + apply = t2 - t0. One warm-up apply with params drawn beforehand comes first.
    """
    from c3_core.seeding import generator_from_seed

    def draw() -> list[Any]:
        return [op.sample_params(batch.case_info(i), generator_from_seed(i), severity) for i in range(batch.size)]

    op.apply(batch, draw())
    apply_t, both_t = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        params = draw()
        t1 = time.perf_counter()
        op.apply(batch, params)
        t2 = time.perf_counter()
        apply_t.append(t2 - t1)
        both_t.append(t2 - t0)
    return statistics.median(apply_t), statistics.median(both_t)


def _ms(seconds: float | None) -> str:
    """Seconds as milliseconds for the table ("-": not measured)."""
    return "-" if seconds is None else f"{seconds * 1e3:.1f}"


def _ratio(value: float | None, ours: float) -> str:
    """``value / ours`` as "12.3x" ("-": not measured)."""
    return "-" if value is None else f"{value / ours:.1f}x"


def _check_changed(name: str, library: str, before: Any, after: Any) -> None:
    """Warn when a reference transform returned its input unchanged (it would time no work)."""
    import torch

    a = torch.as_tensor(after)
    if a.shape == before.shape and torch.equal(a.float(), before.float()):
        print(f"warning: {library} left the image unchanged for {name!r}", file=sys.stderr)


def _rows(tio: Any, monai: Any, sigma_noise: float) -> list[Row]:
    """The compared operators; ``sigma_noise`` is the Gaussian std per channel that our SNR gives."""
    from c3_mri.operators.bias_field import BiasField
    from c3_mri.operators.kspace import Ghosting, GibbsTruncation, RigidMotion, Spike
    from c3_mri.operators.noise import MagnitudeNoise
    from c3_mri.operators.slice_profile import SliceProfile

    mt = monai.transforms
    fwhm = 5.0  # mm, slice profile
    sigma_mm = fwhm / FWHM_PER_SIGMA
    return [
        Row("bias field", BiasField(order=3), 0.3,
            tio.RandomBiasField(coefficients=0.3, order=3, p=1.0),
            mt.RandBiasField(degree=3, coeff_range=(0.0, 0.3), prob=1.0), elementwise=True),
        Row("noise (Rician)", MagnitudeNoise(coils=1), 8.0,
            tio.RandomNoise(mean=0.0, std=(sigma_noise, sigma_noise), p=1.0),
            mt.RandRicianNoise(prob=1.0, mean=0.0, std=sigma_noise, sample_std=False), elementwise=True),
        Row("slice profile 5mm", SliceProfile(slice_axis=2, profile="gaussian", thick=False), fwhm,
            tio.RandomBlur(std=(0.0, 0.0, 0.0, 0.0, sigma_mm, sigma_mm), p=1.0),
            mt.GaussianSmooth(sigma=(0.0, 0.0, sigma_mm))),
        Row("thick slices 5mm", SliceProfile(slice_axis=2, profile="gaussian", thick=True), fwhm,
            tio.RandomAnisotropy(axes=(2,), downsampling=(fwhm, fwhm), p=1.0), None),
        Row("ghosting N/2", Ghosting(phase_axis=1), 0.2,
            tio.RandomGhosting(num_ghosts=(2, 2), axes=(1,), intensity=(0.4, 0.4), restore=None, p=1.0), None),
        Row("motion 4 seg", RigidMotion(phase_axis=1, segments=4), 3.0,
            tio.RandomMotion(degrees=3.0, translation=3.0, num_transforms=3, p=1.0), None),
        Row("gibbs", GibbsTruncation(), 0.5, None, mt.RandGibbsNoise(prob=1.0, alpha=(0.5, 0.5))),
        Row("spike", Spike(), 0.5,
            tio.RandomSpike(num_spikes=(1, 1), intensity=(0.5, 0.5), p=1.0),
            mt.RandKSpaceSpikeNoise(prob=1.0, channel_wise=True)),
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1x32x32x32 volume, 1 repeat (smoke run)")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats per measurement (median)")
    ap.add_argument("--only", default="", help="comma-separated row names (substring match) to run")
    args = ap.parse_args(argv)
    started = time.perf_counter()

    try:
        import monai
        import monai.transforms  # noqa: F401
        import torchio as tio
    except ImportError as exc:
        print(f"bench_mri: the reference libraries are required (pip install torchio monai): {exc}", file=sys.stderr)
        return 2
    import numpy as np
    import torch

    from c3_core.batch import Batch
    from c3_core.seeding import generator_from_seed
    from c3_mri.functional.noise import reference_signal

    threads = int(os.environ.get("OMP_NUM_THREADS", "2"))
    torch.set_num_threads(threads)
    try:
        import SimpleITK as sitk

        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    except ImportError:
        pass
    shape = QUICK_SHAPE if args.quick else FULL_SHAPE
    repeats = 1 if args.quick else max(1, args.repeats)

    image = _phantom(K, shape, generator_from_seed(20261122))
    batches = {
        1: Batch(image[:1].clone(), ("bench-000",), "mri", "magnitude", (SPACING_MM,)),
        K: Batch(image, tuple(f"bench-{i:03d}" for i in range(K)), "mri", "magnitude", (SPACING_MM,) * K),
    }
    # the Gaussian std per channel that our SNR convention gives, so all three add the same noise level
    sigma_noise = float(reference_signal(image[:1]).item()) / 8.0
    rows = _rows(tio, monai, sigma_noise)
    if args.only:
        wanted = [w.strip() for w in args.only.split(",") if w.strip()]
        rows = [r for r in rows if any(w in r.name for w in wanted)]

    torch.manual_seed(0)  # TorchIO's only source of randomness
    for r in rows:
        if r.monai is not None and hasattr(r.monai, "set_random_state"):
            r.monai.set_random_state(seed=0)
    subjects = [tio.Subject(img=tio.ScalarImage(tensor=image[i].clone(), affine=np.eye(4))) for i in range(K)]
    monai_images = [image[i].clone() for i in range(K)]

    print(f"c3-mri vs TorchIO {tio.__version__} / MONAI {monai.__version__}; torch {torch.__version__}, "
          f"numpy {np.__version__}, Python {platform.python_version()}")
    print(f"CPU: {cpu_model()}, {os.cpu_count()} logical cores; threads {threads}; "
          f"volume 1x{'x'.join(map(str, shape))} float32, {SPACING_MM[0]:g} mm; median of {repeats} after 1 warm-up"
          + ("  [QUICK: smoke run, numbers not meaningful]" if args.quick else ""))
    print("times in ms; speedup = reference / ours s+a; ours s+a / clone for element-wise operators")

    clone_s = {n: _median_seconds(lambda b=b: b.image.clone(), repeats) for n, b in batches.items()}
    header = (f"{'setting':<7} {'operator':<18} {'ours apply':>10} {'ours s+a':>9} {'TorchIO':>9} {'MONAI':>9} "
              f"{'x TorchIO':>9} {'x MONAI':>8} {'/clone':>7}")
    print(header)
    print("-" * len(header))
    results: list[dict[str, Any]] = []
    for n, batch in batches.items():
        setting = "single" if n == 1 else f"K={n}"
        print(f"{setting:<7} {'plain clone':<18} {clone_s[n] * 1e3:>10.1f}")
        for r in rows:
            apply_s, sa_s = _time_ours(r.ours, batch, r.severity, repeats)
            tio_s = monai_s = None
            if r.torchio is not None:
                t = r.torchio
                tio_s = _median_seconds(lambda t=t, n=n: [t(s) for s in subjects[:n]], repeats,
                                        warm=lambda t=t, name=r.name: _check_changed(
                                            name, "TorchIO", subjects[0]["img"].data, t(subjects[0])["img"].data))
            if r.monai is not None:
                m = r.monai
                monai_s = _median_seconds(lambda m=m, n=n: [m(x) for x in monai_images[:n]], repeats,
                                          warm=lambda m=m, name=r.name: _check_changed(
                                              name, "MONAI", monai_images[0], m(monai_images[0])))
            res = {"setting": setting, "name": r.name, "apply": apply_s, "sa": sa_s, "torchio": tio_s,
                   "monai": monai_s, "clone": sa_s / clone_s[n] if r.elementwise else None, "row": r}
            results.append(res)
            print(f"{setting:<7} {r.name:<18} {_ms(apply_s):>10} {_ms(sa_s):>9} {_ms(tio_s):>9} {_ms(monai_s):>9} "
                  f"{_ratio(tio_s, sa_s):>9} {_ratio(monai_s, sa_s):>8} {_ratio(res['clone'], 1.0):>7}", flush=True)

    print("notes: noise: TorchIO RandomNoise adds Gaussian noise (1 normal/voxel, can go negative); ours and MONAI "
          "RandRicianNoise are Rician (2 normals/voxel), same sigma. slice profile: TorchIO RandomBlur and MONAI "
          "GaussianSmooth with sigma only along axis 2. ghosting/spike: TorchIO returns the real part, ours the "
          "magnitude. motion: TorchIO resamples with SimpleITK (3 transforms = 4 segments).")
    print()
    failed = 0
    for res in results:
        r = res["row"]
        if not r.elementwise:
            continue
        refs = {k: v for k, v in (("TorchIO", res["torchio"]), ("MONAI", res["monai"])) if v is not None}
        if refs:
            best = min(refs, key=lambda k: refs[k])
            speedup = refs[best] / res["sa"]
            ok = speedup >= SPEEDUP_TARGET
            failed += not ok
            print(f"{'PASS' if ok else 'FAIL'}  {r.name}, {res['setting']}: speedup {speedup:.1f}x over the faster "
                  f"reference ({best} {refs[best] * 1e3:.1f} ms / ours s+a {res['sa'] * 1e3:.1f} ms); "
                  f"target >= {SPEEDUP_TARGET:g}x")
        ok = res["clone"] <= COPY_TARGET
        failed += not ok
        print(f"{'PASS' if ok else 'FAIL'}  {r.name}, {res['setting']}: ours s+a is {res['clone']:.1f}x a plain clone "
              f"({res['sa'] * 1e3:.1f} ms / {clone_s[1 if res['setting'] == 'single' else K] * 1e3:.1f} ms); "
              f"target <= {COPY_TARGET:g}x")
    print(f"{failed} target(s) failed" if failed else "all targets met")
    print(f"total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
