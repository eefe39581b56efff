"""c3-cxr operators against their physical floors, and against Albumentations, imagecorruptions and
MedMNIST-C, side by side in one run.

Input: procedural chest radiographs (``c3_cxr.data.phantom.render_chests``, no findings, drawn
from explicit ``torch.Generator``s) of 512 x 512 px, 0.703 mm pitch (36 cm across), as line
integrals (B, 1, H, W) float32 for ours. The peers get the same images as a user loads them:
the reference display window (``to_display``: mu 0..4 -> 0..1) as (H, W) uint8 numpy arrays,
float32 arrays in [0, 1] (Albumentations also runs on those) or PIL ``L`` images (MedMNIST-C
works on PIL images). Conversions are done before the clock starts. Two settings:

* **single**: one image (ours: ``apply`` on a batch of 1; peers: one call);
* **B=8**: ours is ONE ``apply`` on a batch of 8; every peer is a Python loop of 8 calls, one
  per image (they work per image; that is how a user runs them).

Floors (``FLOORS`` below, one per operator): what the operator's physics must cost at least, timed
on the same batch in the same run (``c3_core.benchmarking``): a clone for element-wise maps (tone,
beam hardening), the photon draws at the operator's counts for dose (one normal per pixel plus
exact Poisson below 20 counts: ``c3_core.functional.photon``), an ``rfft2`` + ``irfft2`` of the
batch for the MTF models (sharpness, resolution), the same on the batch padded to twice its size
for scatter (its kernel is as wide as the image, so the convolution must not wrap around) and one
bilinear ``grid_sample`` for positioning. The table lives here, not on the operator classes: a
floor is a statement about what to time beside the operator on this benchmark's input (the dose
floor needs this input's counts), and the operator API stays free of benchmark concerns. Targets: apply <= 3x a clone,
<= 1.5x its draws, <= 3x its FFTs or its interpolation; ours s+a never slower than a peer doing
the same physics (marked; here the shot-noise peers of ``cxr.dose``). Other peers are listed for
reference.

CT operators (``ct.*``, rows named ``ct ...``; ``--only ct`` runs them alone), at their extreme
severity. Input: scikit-image's Shepp-Logan phantom in HU (``c3_cxr.data.ct_examples.shepp_logan_hu``:
air -1000, soft tissue 0, skull +1000) at the radiographs' 512 x 512 px and 0.703 mm pitch (a 36 cm
body field of view; the phantom spans about 25 x 33 cm), plus 10 HU of white noise per case drawn
from explicit generators (a reconstruction's noise; the cases differ), as ``(B, 1, H, W)`` float32
slices for ``ct.low_dose``, ``ct.kernel`` and ``ct.beam_hardening`` (single: one slice; B=8: 8
slices) and, for ``ct.slice_thickness`` (volumes only), the same slices stacked 16 deep at 1 mm
native slices under the z taper of ``ct_examples.ct_batch`` (single: one volume; B=8: 8 volumes).
Their floors count the interpolation a projector must do at the operators' geometry (ceil(pi/2 N)
angles over [0, pi), 805 at 512 px): one linear interpolation per pixel per angle for the
projection and as many for the back-projection (two gathers and a lerp each, the positions made
outside the clock), the slices' HU -> mu * pixel conversion also outside. ``ct.kernel`` and
``ct.beam_hardening``: that interpolation, because both re-filter or bend the projections of the
slice and must project it and reconstruct the change once (the ramp filter's FFTs, a few ms, and
the element-wise work on the sinogram are left out). ``ct.low_dose``: the same plus the photon
draws at its counts (one normal per ray for the kept and one for the discarded photons, exact
Poisson below 20 counts, as ``c3_core.functional.photon`` draws them), because it simulates the
reference scan and its thinning in the sinogram. ``ct.slice_thickness``: the weighted sum along z
over the taps of its slice-sensitivity profile (``slab_weights``: 3 taps at ratio 3) as shifted
slabs of the replicate-padded volume, because each output voxel must read that many native
slices. The projector floors use the resampling target (<= 3x its interpolation), the z sum the
element-wise one (<= 3x). No peer: no installed library inserts CT noise in the sinogram (or
re-filters, hardens or thickens) with the same physics.

Ours: each repeat draws the params with ``op.sample_params(case_info(i), generator_from_seed(i),
severity)``, reads the clock, then runs ``op.apply(batch, params)``: "apply" excludes the sampling
(compared with the floor), "s+a" is sampling plus apply (what a peer call includes; compared with
peers). Peers draw from their own generators, seeded once here (Albumentations
``set_random_seed(0)``, imagecorruptions and MedMNIST-C use NumPy's global state:
``np.random.seed(0)``).

Every time is the median of N repeats (``time.perf_counter``) after one untimed warm-up call,
which also checks that the peer changed the image (a peer that raises is reported and skipped).
Each row prints the 1-minute load average: numbers taken on a loaded machine are not comparable.

Run: ``nox -s bench -- cxr`` (``--quick``: 64 x 64 images and CT slices, 1 repeat, a smoke run).
Threads: ``OMP_NUM_THREADS`` (default 2) for torch and for OpenCV (``cv2.setNumThreads``).
``--device cuda`` runs ours and the floors on a GPU (peers stay on the CPU; the clock is read
after a sync). Peer libraries are optional: a missing one is reported and skipped.
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
    load_image_peers,
    operator_bench_arguments,
    peer_versions,
    photon_floor,
    print_verdicts,
    resample_floor,
)

FULL_SIZE = 512  # px
QUICK_SIZE = 64
PIXEL_MM = 360.0 / FULL_SIZE  # a 36 cm detector across 512 px
K = 8  # images in the batched setting
DOSE_FRACTION = 0.25
WINDOW_MU = 4.0  # the reference display window is mu 0..4 (c3_cxr.domains.to_display)
CT_DEPTH = 16  # native slices per CT volume (ct.slice_thickness)
CT_SLICE_MM = 1.0  # native slice thickness of the CT volumes, mm (a thin reconstruction)
CT_NOISE_HU = 10.0  # std of the white noise added to each CT case, HU
CT_SEED = 20261200  # CT case i draws its noise from generator_from_seed(CT_SEED + i)


def _dose_counts(fraction: float, i0: float) -> Any:
    """The expected photon counts per pixel of a batch at ``fraction`` of ``i0`` (what cxr.dose draws)."""
    import torch

    return lambda b: (fraction * i0) * torch.exp(-b.image)


def _padded_fft_floor() -> Floor:
    """The FFT convolution a kernel as wide as the image needs: ``rfft2`` + ``irfft2`` of the batch
    reflect-padded by half its size per side (padding done outside the clock).

    cxr.scatter blurs the primary fluence with a Gaussian of sigma 25-60 mm (36-85 px at 0.703 mm):
    its +-3 sigma support spans most of the image, so a linear (not circular) convolution must pad
    by that support, and the operator pads by min(6 sigma + 2, half the image) up to a fast FFT length.
    The FFTs of the unpadded batch (``fft_floor``) are a circular convolution and a quarter of that work."""
    import torch
    from torch.nn import functional as F

    from c3_cxr.functional.filters import fast_fft_length

    def prepare(b: Any) -> Any:
        h, w = b.image.shape[-2:]
        ph, pw = fast_fft_length(2 * h) - h, fast_fft_length(2 * w) - w
        return F.pad(b.image, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), mode="reflect")

    def work(x: Any) -> Any:
        return torch.fft.irfft2(torch.fft.rfft2(x), s=x.shape[-2:])

    return Floor("fft", "rfft2 + irfft2 of the batch padded to 2x per axis", work, prepare)


def _ct_projection_state(b: Any) -> tuple[Any, Any]:
    """What the CT operators project, made outside the clock: the slices of ``b`` (HU, 2-D or 3-D) as
    attenuation per pixel (mu in 1/mm times the pixel in mm, as ``project_hu`` does), ``(S, 1, H, W)``,
    and the operators' angles (rad, ``default_angles``)."""
    from c3_cxr.domains import hu_to_mu
    from c3_cxr.functional.ct import as_slices, pixel_mm
    from c3_cxr.functional.tomography import default_angles

    slices, per_case = as_slices(b.image)
    px = pixel_mm(b.spacing, per_case, slices.device, slices.dtype)
    return hu_to_mu(slices) * px, default_angles(*slices.shape[-2:], slices.device, slices.dtype)


def _interpolation_state(b: Any) -> dict[str, Any]:
    """The projector floor's state, made outside the clock: the slices and angles as
    ``_ct_projection_state`` gives them (``mu``, ``angles``), and flattened with a zero beyond each row; the operators' number of angles A and
    detector bins D; and, for one call's worth of angles (as many as ``tomography`` gathers per
    call), each pixel's position on the projection rotated to that angle, as int32 indices into the
    flat slices and interpolation weights (reused for every call: the cost does not depend on the angle)."""
    import torch
    from torch.nn import functional as F

    from c3_cxr.functional.tomography import _angles_per_call, detector_bins

    mu, angles = _ct_projection_state(b)
    s, _, h, w = mu.shape
    chunk = angles[: _angles_per_call(s, h * w)]
    c, si = chunk.cos().view(-1, 1, 1), chunk.sin().view(-1, 1, 1)
    xs = (torch.arange(w, device=mu.device, dtype=mu.dtype) - (w - 1) / 2).view(1, 1, -1)
    ys = (torch.arange(h, device=mu.device, dtype=mu.dtype) - (h - 1) / 2).view(1, -1, 1)
    pos = (xs * c + ys * si + (w + 1) / 2).clamp(0, w + 1)  # along a row, in the padded row
    start = pos.floor().clamp(max=w)
    rows = (torch.arange(h, device=mu.device, dtype=torch.int32) * (w + 2)).view(1, -1, 1)
    index = (start.to(torch.int32) + rows).flatten()
    return {"mu": mu, "angles": angles, "flat": F.pad(mu[:, 0], (1, 1)).reshape(s, -1), "a": angles.numel(), "d": detector_bins(h, w),
            "chunk": chunk.numel(), "index": index, "next": index + 1, "frac": (pos - start).flatten(), "pixels": h * w}


def _interpolate(state: dict[str, Any]) -> None:
    """A x H x W linear interpolations of the slices (two gathers and a lerp each, positions given),
    summed over each call's angles, twice: the least a two-tap interpolating projector and
    back-projector read and compute (the positions' arithmetic is left out)."""
    flat, index, after, frac = state["flat"], state["index"], state["next"], state["frac"]
    for _ in range(2 * -(-state["a"] // state["chunk"])):
        low = flat.index_select(1, index)
        low.lerp_(flat.index_select(1, after), frac).view(flat.shape[0], state["chunk"], state["pixels"]).sum(1)


def _projector_floor() -> Floor:
    """The interpolation an interpolating projector and back-projector must do at the operators'
    angles: one linear interpolation per pixel per angle for the projection and as many for the
    back-projection, with positions made outside the clock (``_interpolation_state``).

    ct.kernel (FBP with another ramp window of the projections, minus the FBP with the ramp) and
    ct.beam_hardening (FBP of -beta p^2 of the projections) must project the slice once and
    reconstruct the change once; the ramp filter's FFTs (a few ms) and the element-wise work on the
    sinogram are left out. Ours (Joseph's method) samples each of the D rays once per row or column
    (D x H samples per angle, about 1.4 times the pixels), then back-projects one sample per pixel
    per angle, each sample's position computed."""
    return Floor("resample", "A x H x W linear interpolations, twice (projection + back-projection)", _interpolate,
                 _interpolation_state)


def _ct_dose_floor(i0: float, fraction: float) -> Floor:
    """The projector floor plus the photon draws of ct.low_dose at its counts (``i0`` photons per ray
    at the reference dose, dose ``fraction``): one normal per ray for the kept (``fraction``) and one
    for the discarded photons (one in all at fraction 1), exact Poisson where their expected counts
    are below 20 (``c3_core.functional.photon``). The counts come from a projection made outside the
    clock; the clock covers the interpolation and the draws.

    ct.low_dose projects the slice, simulates the reference scan and its thinning ray by ray
    (``poisson_thinning``) and reconstructs the change of the log sinogram once."""
    import torch

    from c3_core.functional.photon import EXACT_BELOW
    from c3_cxr.functional.tomography import radon

    def prepare(b: Any) -> tuple[dict[str, Any], int, list[Any]]:
        state = _interpolation_state(b)
        counts = i0 * torch.exp(-radon(state["mu"], state["angles"]))  # expected photons per ray at the reference dose
        parts = [fraction * counts, (1.0 - fraction) * counts] if fraction < 1.0 else [counts]
        return state, len(parts), [p[p < EXACT_BELOW].contiguous() for p in parts]

    def work(prepared: tuple[dict[str, Any], int, list[Any]]) -> Any:
        state, draws, low = prepared
        flat = state["flat"]
        _interpolate(state)
        g = torch.Generator(device=flat.device)
        g.manual_seed(0)
        z = torch.randn((draws, flat.shape[0], 1, state["a"], state["d"]), generator=g, device=flat.device, dtype=flat.dtype)
        return z, [torch.poisson(x, generator=g) for x in low]

    normals = "2 normals" if fraction < 1.0 else "1 normal"
    return Floor("resample", f"A x H x W interpolations twice + {normals}/ray + Poisson < {EXACT_BELOW:g}", work, prepare)


def _z_sum_floor(ratio: float) -> Floor:
    """ct.slice_thickness at ``ratio`` (x native thickness): the weighted sum along z over the taps of
    its box slice-sensitivity profile (``slab_weights``, 2 ceil((ratio - 1) / 2) + 1 taps) as shifted
    slabs of the volume, replicate-padded along z outside the clock; a clone at ratio 1 (identity).

    Each output voxel averages that many native slices, so it must read them all once."""
    import torch
    from torch.nn import functional as F

    from c3_cxr.functional.ct import slab_weights

    r = torch.tensor([float(ratio)])
    half = int(torch.ceil((r - 1) / 2).item())  # as thicken_slices computes it
    if half <= 0:
        return clone_floor()
    taps = [float(v) for v in slab_weights(r, half)[0]]

    def prepare(b: Any) -> tuple[Any, int]:
        v = b.image  # (B, 1, D, H, W)
        return F.pad(v, (0, 0, 0, 0, half, half), mode="replicate"), v.shape[2]

    def work(state: tuple[Any, int]) -> Any:
        padded, d = state
        out = padded[:, :, :d] * taps[0]
        for k in range(1, len(taps)):
            out.add_(padded[:, :, k : k + d], alpha=taps[k])
        return out

    return Floor("element-wise", f"{len(taps)}-tap weighted sum along z", work, prepare)


FLOORS: dict[str, Callable[[Any, float], Floor]] = {
    # operator id -> its floor, given the operator and the severity (they fix the counts of a photon floor)
    "cxr.dose": lambda op, sev: photon_floor(_dose_counts(sev, op.i0)),
    "cxr.sharpness": lambda op, sev: fft_floor(),
    "cxr.tone": lambda op, sev: clone_floor(),
    "cxr.resolution": lambda op, sev: fft_floor(),
    "cxr.beam_hardening": lambda op, sev: clone_floor(),
    "cxr.scatter": lambda op, sev: _padded_fft_floor(),  # a kernel as wide as the image: linear convolution
    "cxr.geometry": lambda op, sev: resample_floor(),
    "ct.low_dose": lambda op, sev: _ct_dose_floor(op.i0, sev),  # the projector + its photon draws
    "ct.kernel": lambda op, sev: _projector_floor(),
    "ct.beam_hardening": lambda op, sev: _projector_floor(),
    "ct.slice_thickness": lambda op, sev: _z_sum_floor(sev),  # a weighted sum along z
}


def _rows(libs: dict[str, Any], sigma_display: float) -> list[Row]:
    """The compared operators, each with its floor; ``sigma_display`` is our dose noise std in display units (0..1)."""
    from c3_cxr.operators.beam_hardening import BeamHardening
    from c3_cxr.operators.dose import Dose
    from c3_cxr.operators.geometry import Geometry
    from c3_cxr.operators.resolution import Resolution
    from c3_cxr.operators.scatter import Scatter
    from c3_cxr.operators.sharpness import Sharpness
    from c3_cxr.operators.tone import Tone

    sigma_px = 2.25 / PIXEL_MM  # ours: sigma_mm ~ U(1.5, 3) mm at severity 1, mean 2.25 mm
    gamma = 2.0**0.4  # ours at severity 1: gamma = 2^(+-0.4 u)

    def row(name: str, op: Any, wanted: float, note: str) -> Row:
        sev = admissible(op, wanted)
        return Row(f"{name} {sev:g}", op, sev, note=note, floor=FLOORS[op.id](op, sev))

    dose_op = Dose()
    rows = [
        row("dose", dose_op, DOSE_FRACTION, "ours: photon counts (exact Poisson below 20) + electronic noise, log back"),
        row("sharpness", Sharpness(), 1.0, f"ours: sampled Gaussian PSF (soft) or unsharp mask (sharp), sigma 1.5-3 mm = {1.5 / PIXEL_MM:.1f}-{3 / PIXEL_MM:.1f} px"),
        row("tone", Tone(), 1.0, "ours: power-law LUT on mu, gamma 2^(+-0.4)"),
        row("resolution", Resolution(), 2.0, "ours: sinc aperture MTF + 2x pitch sampling + bilinear back"),
    ]
    for op in (BeamHardening(), Scatter(), Geometry()):
        rows.append(row(op.id.split(".", 1)[1].replace("_", " "), op, op.severity.extreme, f"ours: {op.summary}"))
    dose, sharp, tone, res = rows[:4]
    if "Albumentations" in libs:
        A = libs["Albumentations"]
        s = max(sigma_display, 1e-3)
        kernel = 2 * math.ceil(3.0 * sigma_px) + 1  # odd, +-3 sigma (UnsharpMask needs it given; GaussianBlur derives it)
        specs = [
            (dose, "GaussNoise", A.GaussNoise(std_range=(s, s), p=1.0), False),
            (dose, "ShotNoise", A.ShotNoise(scale_range=(1e-3, 1e-3), p=1.0), True),
            (sharp, "GaussianBlur", A.GaussianBlur(blur_limit=0, sigma_limit=(sigma_px, sigma_px), p=1.0), False),
            (sharp, "UnsharpMask", A.UnsharpMask(blur_limit=(kernel, kernel), sigma_limit=(sigma_px, sigma_px), alpha=(0.5, 0.5),
                                                 threshold=0, p=1.0), False),
            (tone, "RandomGamma", A.RandomGamma(gamma_limit=(100 * gamma, 100 * gamma), p=1.0), False),
            (res, "Downscale", A.Downscale(scale_range=(0.5, 0.5), p=1.0), False),
        ]
        for r, name, t, same in specs:
            t.set_random_seed(0)
            for kind in ("u8", "f32"):
                r.peers.append(Peer("Albumentations", f"{name} {kind}", kind, lambda x, t=t: t(image=x)["image"], same_physics=same))
    if "imagecorruptions" in libs:
        corrupt = libs["imagecorruptions"].corrupt
        for r, name, sev, same in ((dose, "gaussian_noise", 1, False), (dose, "shot_noise", 3, True), (sharp, "gaussian_blur", 1, False),
                                   (res, "pixelate", 5, False)):
            r.peers.append(Peer("imagecorruptions", f"{name} s{sev}", "u8",
                                lambda x, n=name, s=sev: corrupt(x, corruption_name=n, severity=s), same_physics=same))
    if "MedMNIST-C" in libs:
        mc = libs["MedMNIST-C"]
        # chestmnist settings of MedMNIST-C's registry (severity index in brackets)
        specs = [
            (dose, "GaussianNoise[0]", mc["noise"].GaussianNoise([0.04, 0.08, 0.12, 0.18, 0.26]), 0, False),
            (dose, "ShotNoise[0]", mc["noise"].ShotNoise([60, 25, 18, 10, 5]), 0, True),
            (tone, "GammaCorrection(1.3)", mc["enhance"].GammaCorrection([1.1, 1.2, 1.3, 1.4, 1.6]), 2, False),
            (res, "Pixelate[3]", mc["compression"].Pixelate([0.30, 0.25, 0.20, 0.15, 0.10]), 0, False),
        ]
        if "filter" in mc:
            specs.append((sharp, "GaussianBlur(k=13)", mc["filter"].GaussianBlur([3, 5, 7, 9, 11, 13]), 5, False))
        for r, name, c, sev, same in specs:
            r.peers.append(Peer("MedMNIST-C", name, "pil", lambda x, c=c, s=sev: c.apply(x, severity=s), same_physics=same))
    return rows


def _ct_rows() -> tuple[list[Row], list[Row]]:
    """The CT operators at their extreme severity, each with its floor: (rows on slices, rows on volumes)."""
    from c3_cxr.operators.ct_beam_hardening import CTBeamHardening
    from c3_cxr.operators.ct_dose import CTLowDose
    from c3_cxr.operators.ct_kernel import CTKernel
    from c3_cxr.operators.ct_slice import CTSliceThickness

    def row(name: str, op: Any, note: str) -> Row:
        sev = op.severity.extreme
        return Row(f"ct {name} {sev:g}", op, sev, note=note, floor=FLOORS[op.id](op, sev))

    dose = CTLowDose()
    slices = [
        row("low dose", dose, f"ours: radon, Poisson reference scan at I0 {dose.i0:g}/ray split into kept and discarded photons, "
                              "FBP of the log change; floor: the interpolation of a projection and a back-projection, and "
                              "the draws; no peer: no same-physics library for CT noise insertion is installed"),
        row("kernel", CTKernel(), "ours: radon + one FBP with the change of the ramp window; floor: the interpolation"),
        row("beam hardening", CTBeamHardening(), "ours: radon, -beta p^2, one FBP of the change; floor: the interpolation"),
    ]
    volumes = [row("slice thickness", CTSliceThickness(), "ours: box slice profile along z, a multiply-add per tap on "
                                                          "shifted slabs, end slices replicated; floor: the same sum on "
                                                          "a volume padded outside the clock")]
    return slices, volumes


def _ct_input(size: int, n: int) -> tuple[Any, Any]:
    """``n`` CT cases in HU: slices ``(n, 1, size, size)`` (Shepp-Logan plus ``CT_NOISE_HU`` of white
    noise, case i from ``generator_from_seed(CT_SEED + i)``) and volumes ``(n, 1, CT_DEPTH, size, size)``
    (each slice under ``ct_examples.stack_under_taper``, as the CT test batches, so thickening has something to average)."""
    import torch

    from c3_core.seeding import generator_from_seed
    from c3_cxr.data.ct_examples import shepp_logan_hu, stack_under_taper

    base = shepp_logan_hu(size)
    noise = [torch.randn(base.shape, generator=generator_from_seed(CT_SEED + i)) for i in range(n)]
    slices = torch.stack([base + CT_NOISE_HU * z for z in noise])[:, None].contiguous()
    return slices, stack_under_taper(slices, CT_DEPTH).contiguous()


def main(argv: list[str] | None = None) -> int:
    ap = operator_bench_arguments(__doc__, "64 x 64 images", device="torch device for ours (peers always run on the CPU)", only="; 'ct': the CT rows")
    args = ap.parse_args(argv)
    started = time.perf_counter()

    libs = load_image_peers("bench_cxr")
    if not libs:
        print("bench_cxr: no peer library installed (pip install albumentations imagecorruptions medmnistc): floors only",
              file=sys.stderr)
    import numpy as np
    import torch
    from PIL import Image

    from c3_core.batch import Batch
    from c3_core.seeding import generator_from_seed
    from c3_cxr.data.phantom import render_chests
    from c3_cxr.domains import to_display

    threads = int(os.environ.get("OMP_NUM_THREADS", "2"))
    torch.set_num_threads(threads)
    try:
        import cv2

        cv2.setNumThreads(threads)
    except ImportError:
        cv2 = None
    device = torch.device(args.device)
    sync: Callable[[], None] = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    size = QUICK_SIZE if args.quick else FULL_SIZE
    pixel_mm = 360.0 / size
    repeats = 1 if args.quick else max(1, args.repeats)

    mu = render_chests(torch.zeros(K, 5, dtype=torch.bool), [generator_from_seed(20261123 + i) for i in range(K)], size=size).mu
    shown = to_display(mu)[:, 0].numpy()  # (K, H, W) in [0, 1]
    images = {
        "f32": [np.ascontiguousarray(shown[i], dtype=np.float32) for i in range(K)],
        "u8": [np.round(shown[i] * 255.0).astype(np.uint8) for i in range(K)],
    }
    images["pil"] = [Image.fromarray(x) for x in images["u8"]]  # mode "L"
    spacing = ((pixel_mm, pixel_mm),)
    batches = {
        1: Batch(mu[:1].clone().to(device), ("bench-000",), "cxr", "log_attenuation", spacing),
        K: Batch(mu.clone().to(device), tuple(f"bench-{i:03d}" for i in range(K)), "cxr", "log_attenuation", spacing * K),
    }
    # the std of our dose noise in display units: 1 / sqrt(counts) per pixel, mean over the body
    body = mu > 0.2
    counts = DOSE_FRACTION * 20000.0 * torch.exp(-mu[body])
    sigma_display = float((1.0 / counts.sqrt()).mean()) / WINDOW_MU
    rows = _rows(libs, sigma_display)
    ct_slice_rows, ct_volume_rows = _ct_rows()
    if args.only:
        wanted = [w.strip() for w in args.only.split(",") if w.strip()]
        rows, ct_slice_rows, ct_volume_rows = ([r for r in rs if any(w in r.name for w in wanted)]
                                               for rs in (rows, ct_slice_rows, ct_volume_rows))
    ct_batches: dict[str, dict[int, Batch]] = {}
    if ct_slice_rows or ct_volume_rows:
        hu, volumes = _ct_input(size, K)
        ids = tuple(f"bench-ct-{i:03d}" for i in range(K))
        flat, deep = ((pixel_mm, pixel_mm),), ((CT_SLICE_MM, pixel_mm, pixel_mm),)
        ct_batches["slices"] = {1: Batch(hu[:1].clone().to(device), ids[:1], "ct", "hu", flat),
                                K: Batch(hu.to(device), ids, "ct", "hu", flat * K)}
        ct_batches["volumes"] = {1: Batch(volumes[:1].clone().to(device), ids[:1], "ct", "hu", deep),
                                 K: Batch(volumes.to(device), ids, "ct", "hu", deep * K)}
    np.random.seed(0)  # imagecorruptions' and MedMNIST-C's only source of randomness

    versions = peer_versions(libs) or "no peer library"
    print(f"c3-cxr vs its floors and {versions}; torch {torch.__version__}, numpy {np.__version__}, "
          f"OpenCV {cv2.__version__ if cv2 else '-'}, Python {platform.python_version()}")
    print(f"CPU: {cpu_model()}, {os.cpu_count()} logical cores; threads {threads}; ours on {device}; "
          f"images {size}x{size}, {pixel_mm:.3f} mm; median of {repeats} after 1 warm-up; load average {load_average()} at start"
          + ("  [QUICK: smoke run, numbers not meaningful]" if args.quick else ""))
    print("times in ms per batch; ratio = ours apply / floor; peer speedup = peer / ours s+a (above 1: ours faster); "
          "peers loop over the images")
    verdicts = compare(rows, batches, images, repeats, sync, name_width=18, peer_width=44) if rows else []
    if rows:
        print("notes: " + "; ".join(f"{r.name}: {r.note}" for r in rows if r.note)
              + f"; peers: GaussNoise std {sigma_display:.4f} (our dose noise in display units), ShotNoise scale 1e-3; "
              "imagecorruptions stacks grey images to 3 channels; MedMNIST-C runs on PIL images.")
    if ct_batches:
        print(f"\nCT: Shepp-Logan in HU + {CT_NOISE_HU:g} HU noise, slices (B, 1, {size}, {size}) at {pixel_mm:.3f} mm; "
              f"volumes (B, 1, {CT_DEPTH}, {size}, {size}) at {CT_SLICE_MM:g} mm slices; no peer library does this physics")
        for kind, ct_rows in (("slices", ct_slice_rows), ("volumes", ct_volume_rows)):
            if ct_rows:
                verdicts += compare(ct_rows, ct_batches[kind], {}, repeats, sync, name_width=24, peer_width=44)
        print("notes: " + "; ".join(f"{r.name}: {r.note}" for r in ct_slice_rows + ct_volume_rows if r.note) + ".")
    print()
    print_verdicts(verdicts, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
