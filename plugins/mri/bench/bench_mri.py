"""c3-mri operators against their physical floors, and against their nearest TorchIO and MONAI
equivalents, side by side in one run.

Input: a synthetic head-like magnitude phantom, (B, 1, 160, 192, 160) float32, 1 mm isotropic
(deterministic, from an explicit ``torch.Generator``). Two settings:

* **single**: one volume (B = 1);
* **B=8**: ours is ONE ``apply`` on a batch of 8; TorchIO and MONAI are a Python loop of 8 calls,
  one per subject / image (how a user runs them: they work per case).

Floors (``FLOORS`` below, one per operator): what the operator's physics must cost at least, timed
on the same batch in the same run (``c3_core.benchmarking``): a clone for element-wise work (bias
field; the spike, whose one k-space sample is a plane wave in image space; the N/2 ghost, which
for even N is the object blended with its half-FOV shift), the two normal draws per voxel of
Rician noise (real and imaginary channel), a real FFT and its inverse over the volume for the
k-space truncation (Gibbs) and along the slice axis for the slice profile, and for motion the
object resampled into each segment's pose (one bilinear ``grid_sample`` per segment; its 1-D FFTs
along the phase-encode axis are the work above that floor), for B0 distortion the object displaced
along the phase-encode axis (one linear interpolation along it: two gathers and a lerp; the
per-voxel inverse of the displacement, a quadratic's root, and the Jacobian are the work above
that floor), and a clone for the
protocol contrast (a new signal per voxel; on this phantom, which has no tissue maps, the
intensity lookup with its k-means anchors). The table lives here, not on the operator classes: a floor is a statement about
what to time beside the operator on this benchmark's input, and the operator API stays free of
benchmark concerns. Targets: apply <= 3x a clone, <= 1.5x its draws, <= 3x its FFTs; ours s+a
never slower than a peer doing the same physics (marked: MONAI RandRicianNoise, TorchIO
RandomMotion / RandomSpike / RandomGhosting). Other references are listed: TorchIO RandomNoise
adds one Gaussian per voxel (it can go negative), not Rician noise.

Ours: each repeat draws the params with ``op.sample_params(case_info(i), generator_from_seed(i),
severity)``, reads the clock, then runs ``op.apply(batch, params)``: "apply" excludes the sampling
(compared with the floor), "s+a" is sampling plus apply (what the references' calls include).
TorchIO runs on a ``tio.Subject`` of one ``ScalarImage`` made from a (C, W, H, D) torch tensor
(identity affine, 1 mm), MONAI on a (C, H, W, D) torch tensor; every reference transform has
prob = 1. TorchIO draws from torch's global RNG and MONAI from its own
``numpy.random.RandomState``: both are seeded once here (their only APIs for it); c3 randomness
comes from explicit generators.

Every time is the median of N repeats (``time.perf_counter``) after one warm-up call, which also
checks that a reference changed the image. Each row prints the 1-minute load average: numbers
taken on a loaded machine are not comparable.

Run: ``nox -s bench -- mri`` (``--quick``: a 32 x 32 x 32 volume and 1 repeat, a smoke run).
Threads: ``OMP_NUM_THREADS`` (default 2) for torch, and for SimpleITK (TorchIO's resampler).
``--device cuda`` runs ours and the floors on a GPU (the references stay on the CPU; the clock is
read after a sync). TorchIO and MONAI are optional: a missing one is reported and skipped.
"""

from __future__ import annotations

import math
import os
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

from c3_core.benchmarking import (
    Floor,
    Peer,
    Row,
    admissible,
    clone_floor,
    compare,
    cpu_model,
    fft_floor,
    load_average,
    normal_floor,
    operator_bench_arguments,
    print_verdicts,
    resample_floor,
)

FULL_SHAPE = (160, 192, 160)  # voxels, spatial axes 0, 1, 2
QUICK_SHAPE = (32, 32, 32)
SPACING_MM = (1.0, 1.0, 1.0)
K = 8  # cases in the batched setting
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
SLICE_AXIS = 2
PHASE_AXIS = 1

def _axis_resample_floor(axis: int) -> Floor:
    """A displacement along one axis: each voxel's value interpolated linearly between its two
    neighbours along ``axis`` at positions made outside the clock (two gathers and a lerp)."""
    import torch

    def prepare(b: Any) -> Any:
        x = b.image
        n = x.shape[2 + axis]
        g = torch.Generator(device=x.device)
        g.manual_seed(0)
        pos = torch.rand(x.shape, generator=g, device=x.device, dtype=x.dtype) * (n - 1)
        lower = pos.floor()
        return x, lower.long(), (lower.long() + 1).clamp_max(n - 1), pos - lower

    def work(state: Any) -> Any:
        x, lower, upper, weight = state
        return torch.lerp(x.gather(2 + axis, lower), x.gather(2 + axis, upper), weight)

    return Floor("resample", f"one linear interpolation along axis {axis} (2 gathers + lerp)", work, prepare)


FLOORS: dict[str, Callable[[Any], Floor]] = {
    # operator id -> its floor, given the operator
    "mri.bias_field": lambda op: clone_floor(),
    "mri.noise": lambda op: normal_floor(2 * op.coils, per="voxel"),
    "mri.slice_profile": lambda op: fft_floor(axes=(op.slice_axis,)),
    "mri.ghosting": lambda op: clone_floor(),  # even N: the object blended with its N/2 shift, no FFT
    "mri.motion": lambda op: resample_floor(op.segments),  # the object in each segment's pose
    "mri.gibbs": lambda op: fft_floor(),
    "mri.spike": lambda op: clone_floor(),  # one k-space sample is a plane wave in image space
    "mri.b0_distortion": lambda op: _axis_resample_floor(op.phase_axis),  # the object displaced along phase encode
    "mri.contrast": lambda op: clone_floor(),  # a new signal per voxel from its tissue (or intensity class)
}


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


def _rows(tio: Any | None, monai: Any | None, snr_to_sigma: Callable[[float], float]) -> list[Row]:
    """The compared operators with their floors and references; ``snr_to_sigma`` turns our SNR into
    the Gaussian std per channel it gives on this phantom, so all add the same noise level."""
    from c3_mri.operators.b0_distortion import B0Distortion
    from c3_mri.operators.bias_field import BiasField
    from c3_mri.operators.contrast import ProtocolContrast
    from c3_mri.operators.kspace import Ghosting, GibbsTruncation, RigidMotion, Spike
    from c3_mri.operators.noise import MagnitudeNoise
    from c3_mri.operators.slice_profile import SliceProfile

    def row(name: str, op: Any, wanted: float) -> Row:
        sev = admissible(op, wanted)
        return Row(f"{name} {sev:g}", op, sev, floor=FLOORS[op.id](op))

    rows = {
        "bias": row("bias field", BiasField(order=3), 0.3),
        "noise": row("noise Rician", MagnitudeNoise(coils=1), 8.0),
        "profile": row("slice prof.", SliceProfile(slice_axis=SLICE_AXIS, profile="gaussian", thick=False), 5.0),
        "thick": row("thick slices", SliceProfile(slice_axis=SLICE_AXIS, profile="gaussian", thick=True), 5.0),
        "ghost": row("ghosting", Ghosting(phase_axis=PHASE_AXIS), 0.2),
        "motion": row("motion 4 seg", RigidMotion(phase_axis=PHASE_AXIS, segments=4), 3.0),
        "gibbs": row("gibbs", GibbsTruncation(), 0.5),
        "spike": row("spike", Spike(), 0.5),
        "b0": row("b0 distortion", B0Distortion(phase_axis=PHASE_AXIS), 100.0),
        "contrast": row("contrast (lookup)", ProtocolContrast(), 1.0),  # no tissue maps: the intensity lookup
    }
    bias, noise, profile, thick, ghost, motion, spike = (rows[k].severity for k in ("bias", "noise", "profile", "thick", "ghost",
                                                                                     "motion", "spike"))
    gibbs = rows["gibbs"].severity
    sigma = snr_to_sigma(noise)
    sigma_mm = profile / FWHM_PER_SIGMA
    if tio is not None:
        def tio_peer(key: str, name: str, t: Any, same: bool = False) -> None:
            rows[key].peers.append(Peer("TorchIO", name, "tio", lambda s, t=t: t(s), same_physics=same,
                                        view=lambda s: s["img"].data if hasattr(s, "keys") else s))

        tio_peer("bias", "RandomBiasField", tio.RandomBiasField(coefficients=bias, order=3, p=1.0))
        tio_peer("noise", "RandomNoise (Gaussian)", tio.RandomNoise(mean=0.0, std=(sigma, sigma), p=1.0))
        tio_peer("profile", "RandomBlur", tio.RandomBlur(std=(0.0, 0.0, 0.0, 0.0, sigma_mm, sigma_mm), p=1.0))
        tio_peer("thick", "RandomAnisotropy", tio.RandomAnisotropy(axes=(SLICE_AXIS,), downsampling=(thick, thick), p=1.0))
        tio_peer("ghost", "RandomGhosting", tio.RandomGhosting(num_ghosts=(2, 2), axes=(PHASE_AXIS,), intensity=(2 * ghost, 2 * ghost),
                                                               restore=None, p=1.0), same=True)
        tio_peer("motion", "RandomMotion", tio.RandomMotion(degrees=motion, translation=motion, num_transforms=3, p=1.0), same=True)
        tio_peer("spike", "RandomSpike", tio.RandomSpike(num_spikes=(1, 1), intensity=(spike, spike), p=1.0), same=True)
    if monai is not None:
        mt = monai.transforms

        def monai_peer(key: str, name: str, t: Any, same: bool = False) -> None:
            if hasattr(t, "set_random_state"):
                t.set_random_state(seed=0)
            rows[key].peers.append(Peer("MONAI", name, "monai", t, same_physics=same))

        monai_peer("bias", "RandBiasField", mt.RandBiasField(degree=3, coeff_range=(0.0, bias), prob=1.0))
        monai_peer("noise", "RandRicianNoise", mt.RandRicianNoise(prob=1.0, mean=0.0, std=sigma, sample_std=False), same=True)
        monai_peer("profile", "GaussianSmooth", mt.GaussianSmooth(sigma=(0.0, 0.0, sigma_mm)))
        monai_peer("gibbs", "RandGibbsNoise", mt.RandGibbsNoise(prob=1.0, alpha=(gibbs, gibbs)))
        monai_peer("spike", "RandKSpaceSpikeNoise", mt.RandKSpaceSpikeNoise(prob=1.0, channel_wise=True))
    return list(rows.values())


def main(argv: list[str] | None = None) -> int:
    ap = operator_bench_arguments(__doc__, "1x32x32x32 volume", device="torch device for ours and the floors (references always run on the CPU)")
    args = ap.parse_args(argv)
    started = time.perf_counter()

    import numpy as np
    import torch

    tio = monai = None
    try:
        import torchio as tio
    except ImportError as exc:
        print(f"bench_mri: TorchIO skipped (pip install torchio): {exc}", file=sys.stderr)
    try:
        import monai
        import monai.transforms  # noqa: F401
    except ImportError as exc:
        print(f"bench_mri: MONAI skipped (pip install monai): {exc}", file=sys.stderr)

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
    device = torch.device(args.device)
    sync: Callable[[], None] = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    shape = QUICK_SHAPE if args.quick else FULL_SHAPE
    repeats = 1 if args.quick else max(1, args.repeats)

    image = _phantom(K, shape, generator_from_seed(20261122))
    batches = {
        1: Batch(image[:1].clone().to(device), ("bench-000",), "mri", "magnitude", (SPACING_MM,)),
        K: Batch(image.to(device), tuple(f"bench-{i:03d}" for i in range(K)), "mri", "magnitude", (SPACING_MM,) * K),
    }
    ref = float(reference_signal(image[:1]).item())
    rows = _rows(tio, monai, lambda snr: ref / snr)
    if args.only:
        wanted = [w.strip() for w in args.only.split(",") if w.strip()]
        rows = [r for r in rows if any(w in r.name for w in wanted)]

    torch.manual_seed(0)  # TorchIO's only source of randomness
    images: dict[str, list[Any]] = {"monai": [image[i].clone() for i in range(K)]}
    if tio is not None:
        images["tio"] = [tio.Subject(img=tio.ScalarImage(tensor=image[i].clone(), affine=np.eye(4))) for i in range(K)]

    refs = ", ".join(f"{n} {m.__version__}" for n, m in (("TorchIO", tio), ("MONAI", monai)) if m is not None) or "no reference library"
    print(f"c3-mri vs its floors and {refs}; torch {torch.__version__}, numpy {np.__version__}, Python {platform.python_version()}")
    print(f"CPU: {cpu_model()}, {os.cpu_count()} logical cores; threads {threads}; ours on {device}; "
          f"volume 1x{'x'.join(map(str, shape))} float32, {SPACING_MM[0]:g} mm; median of {repeats} after 1 warm-up; "
          f"load average {load_average()} at start" + ("  [QUICK: smoke run, numbers not meaningful]" if args.quick else ""))
    print("times in ms; ratio = ours apply / floor; peer speedup = reference / ours s+a (above 1: ours faster); "
          "references loop over the cases")
    verdicts = compare(rows, batches, images, repeats, sync, name_width=18, peer_width=40)
    print("notes: noise: TorchIO RandomNoise adds Gaussian noise (1 normal/voxel, can go negative); ours and MONAI "
          "RandRicianNoise are Rician (2 normals/voxel), same sigma. slice profile: TorchIO RandomBlur and MONAI "
          "GaussianSmooth with sigma only along axis 2. ghosting/spike: TorchIO returns the real part, ours the "
          "magnitude. motion: TorchIO resamples with SimpleITK (3 transforms = 4 segments). b0 distortion, "
          "contrast: no TorchIO or MONAI transform does this physics (a B0 field map, a Bloch protocol change).")
    print()
    print_verdicts(verdicts, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
