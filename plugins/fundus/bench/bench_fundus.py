"""c3-fundus operators against their physical floors, and against Albumentations, imagecorruptions
and MedMNIST-C, side by side in one run.

Input: procedural colour fundus photographs (``c3_fundus.data.phantom.render_fundus``, grades
0-4 in turn, each from an explicit ``torch.Generator``) of 512 x 512 px, 12 mm of retina across
the field of view (``c3_fundus.data.demo.demo_spacing``), sRGB (B, 3, H, W) float32 in [0, 1]
for ours, with the FOV mask in ``extras['fov']`` and the lesion masks, as a cohort carries them.
The peers get the same photographs as a user loads them: (H, W, 3) uint8 numpy arrays, float32
arrays in [0, 1] (Albumentations also runs on those) or PIL ``RGB`` images (MedMNIST-C works on
PIL images). Conversions are done before the clock starts. Two settings:

* **single**: one image (ours: ``apply`` on a batch of 1; peers: one call);
* **B=8**: ours is ONE ``apply`` on a batch of 8; every peer is a Python loop of 8 calls, one
  per image (they work per image; that is how a user runs them).

Floors (``FLOORS`` below, one per operator): what the operator's physics must cost at least, timed
on the same batch in the same run (``c3_core.benchmarking``): a clone for the element-wise maps
in linear light (illumination, vignetting, camera response; the sRGB decode and encode every
fundus operator needs are part of their work, so these maps are also timed against a second
floor, that round trip alone, printed after the table with its own target of 1.5x), one bilinear
``grid_sample`` of the image for the field of view (it re-frames the photograph), for the sensor the draws its noise
needs on the raw Bayer plane (one normal per photosite plus exact Poisson below 20 e-, and the
two normal draws of the PRNU / DSNU fixed pattern), an ``rfft2`` + ``irfft2`` for the optics
(defocus PSF) and the 8 x 8 block DCT and its inverse for JPEG. The table lives here, not on the
operator classes: a floor is a statement about what to time beside the operator on this
benchmark's input (the sensor floor needs this input's electrons). Targets: apply <= 3x a clone,
<= 1.5x its draws, <= 3x its transforms; ours s+a never slower than a peer doing the same
physics (marked; here the shot-noise peers of ``fundus.sensor``). Other peers are listed for
reference.

Ours: each repeat draws the params with ``op.sample_params(case_info(i), generator_from_seed(i),
severity)``, reads the clock, then runs ``op.apply(batch, params)``: "apply" excludes the sampling
(compared with the floor), "s+a" is sampling plus apply (what a peer call includes; compared with
peers). Peers draw from their own generators, seeded once here (Albumentations
``set_random_seed(0)``, imagecorruptions and MedMNIST-C use NumPy's global state:
``np.random.seed(0)``).

Every time is the median of N repeats (``time.perf_counter``) after one untimed warm-up call,
which also checks that the peer changed the image (a peer that raises is reported and skipped).
Each row prints the 1-minute load average: numbers taken on a loaded machine are not comparable.

Run: ``nox -s bench -- fundus`` (``--quick``: 64 x 64 images, 1 repeat, a smoke run).
Threads: ``OMP_NUM_THREADS`` (default 2) for torch and for OpenCV (``cv2.setNumThreads``).
``--device cuda`` runs ours and the floors on a GPU (peers stay on the CPU; the clock is read
after a sync). Peer libraries are optional: a missing one is reported and skipped.
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
    Peer,
    Row,
    admissible,
    clone_floor,
    compare,
    cpu_model,
    fft_floor,
    load_average,
    load_image_peers,
    median_seconds,
    operator_bench_arguments,
    peer_versions,
    photon_floor,
    print_verdicts,
    resample_floor,
    time_operator,
)

FULL_SIZE = 512  # px
QUICK_SIZE = 64
K = 8  # images in the batched setting
FULL_WELL_E = 800.0  # ours: sensor severity (photo-electrons at full scale)


def _raw_electrons(full_well: float) -> Callable[[Any], Any]:
    """The expected photo-electrons per photosite of the raw RGGB plane (what fundus.sensor draws)."""
    from c3_fundus.functional.sensor import raw_mosaic
    from c3_fundus.functional.srgb import srgb_to_linear_fast

    return lambda b: raw_mosaic(srgb_to_linear_fast(b.image)) * full_well


def _block_dct_floor() -> Floor:
    """The transforms JPEG needs: an 8 x 8 block DCT of the three planes and its inverse (two
    batched 8 x 8 matrix products each way), timed on the batch."""
    import math

    import torch

    def prepare(b: Any) -> Any:
        n = torch.arange(8, dtype=torch.float64)
        d = torch.cos(math.pi * (2 * n.view(1, -1) + 1) * n.view(-1, 1) / 16) * math.sqrt(2 / 8)
        d[0] /= math.sqrt(2)
        return b.image, d.to(b.image.dtype).to(b.device)

    def work(state: Any) -> Any:
        x, d = state
        bsz, c, h, w = x.shape
        blocks = x[..., : h // 8 * 8, : w // 8 * 8].reshape(bsz, c, h // 8, 8, w // 8, 8).transpose(3, 4)
        coeff = d @ blocks @ d.T
        return (d.T @ coeff @ d).transpose(3, 4).reshape(bsz, c, h // 8 * 8, w // 8 * 8)

    return Floor("fft", "8x8 block DCT + inverse (matmuls)", work, prepare)


FLOORS: dict[str, Callable[[Any, float], Floor]] = {
    # operator id -> its floor, given the operator and the severity (they fix the sensor's electrons)
    "fundus.illumination": lambda op, sev: clone_floor(),
    "fundus.vignetting": lambda op, sev: clone_floor(),
    "fundus.sensor": lambda op, sev: photon_floor(_raw_electrons(sev), extra_normals=2, per="photosite"),
    "fundus.camera_response": lambda op, sev: clone_floor(),
    "fundus.optics": lambda op, sev: fft_floor(),
    "fundus.jpeg": lambda op, sev: _block_dct_floor(),
    "fundus.field_of_view": lambda op, sev: resample_floor(),  # it re-frames: a bilinear resampling of the image
}
ROUND_TRIP = ("illumination", "vignetting", "camera response")  # linear-light maps: also timed against the round trip
ROUND_TRIP_TARGET = 1.5  # apply <= 1.5x the sRGB -> linear -> sRGB round trip of the batch


def _round_trip_verdicts(rows: list[Any], batches: dict[int, Any], repeats: int, sync: Callable[[], None]) -> list[str]:
    """The linear-light maps beside a second floor: the sRGB decode and encode of the batch.

    An operator whose physics is a map of linear light must decode the sRGB values and encode
    the result (``srgb_to_linear_fast`` + ``linear_to_srgb_fast``, timed here on the batch): that
    round trip alone costs over ten clones, so the clone floor's 3x cannot be met by any exact
    linear-light operator; its own arithmetic is held to at most ``ROUND_TRIP_TARGET`` x the round trip.
    """
    from c3_fundus.functional.srgb import linear_to_srgb_fast, srgb_to_linear_fast

    verdicts: list[str] = []
    print(f"linear-light maps against the sRGB round trip (target <= {ROUND_TRIP_TARGET:g}x):")
    for n, batch in batches.items():
        setting = "single" if n == 1 else f"B={n}"
        trip_s = median_seconds(lambda b=batch: linear_to_srgb_fast(srgb_to_linear_fast(b.image)), repeats, sync)
        clone_s = median_seconds(lambda b=batch: b.image.clone(), repeats, sync)
        for r in rows:
            if r.name not in ROUND_TRIP:
                continue
            apply_s = time_operator(r.ours, batch, r.severity, repeats, sync)[0]
            ratio = apply_s / trip_s
            print(f"{setting:<7} {r.name:<15} apply {apply_s * 1e3:7.1f} ms  round trip {trip_s * 1e3:6.1f} ms "
                  f"(= {trip_s / clone_s:.1f}x a clone)  ratio {ratio:.2f}x  load {load_average()}", flush=True)
            verdicts.append(f"{'PASS' if ratio <= ROUND_TRIP_TARGET else 'FAIL'}  {r.name}, {setting}: apply "
                            f"{apply_s * 1e3:.1f} ms = {ratio:.2f}x the sRGB round trip ({trip_s * 1e3:.1f} ms, "
                            f"{trip_s / clone_s:.1f}x a clone); target <= {ROUND_TRIP_TARGET:g}x (linear light)")
    return verdicts


def _albumentations_call(make: Callable[[], Any]) -> Callable[[Any], Any]:
    """``image -> make()(image=image)["image"]``, the transform built (and seeded) once; a transform
    this Albumentations version rejects raises its error at the (reported) warm-up call instead."""
    try:
        t = make()
        t.set_random_seed(0)
    except Exception as exc:  # noqa: BLE001 - reported by _warm_peer
        def broken(image: Any, exc: Exception = exc) -> Any:
            raise exc

        return broken
    return lambda image: t(image=image)["image"]


def _albumentations_peers(A: Any, rows: dict[str, Row], pixel_mm: float, full_well: float) -> None:
    """Albumentations equivalents, each on uint8 and on float32 images."""
    radius = max(1, round(0.09 / pixel_mm))  # ours: blur-circle radius U(60, 120) um at severity 1, mean 90 um
    specs: list[tuple[str, str, Callable[[], Any]]] = [
        ("illumination", "Illumination gaussian", lambda: A.Illumination(mode="gaussian", intensity_range=(0.2, 0.2), p=1.0)),
        ("illumination", "RandomBrightnessContrast",
         lambda: A.RandomBrightnessContrast(brightness_limit=(0.2, 0.2), contrast_limit=(0.0, 0.0), p=1.0)),
        ("vignetting", "Illumination centred", lambda: A.Illumination(mode="gaussian", effect_type="brighten", intensity_range=(0.2, 0.2),
                                                                      center_range=(0.5, 0.5), sigma_range=(0.5, 0.5), p=1.0)),
        ("sensor", "GaussNoise", lambda: A.GaussNoise(std_range=(0.05, 0.05), p=1.0)),
        ("sensor", "ShotNoise", lambda: A.ShotNoise(scale_range=(1.0 / full_well, 1.0 / full_well), p=1.0)),
        ("sensor", "ISONoise", lambda: A.ISONoise(color_shift=(0.02, 0.02), intensity=(0.3, 0.3), p=1.0)),
        ("camera response", "RandomGamma", lambda: A.RandomGamma(gamma_limit=(125, 125), p=1.0)),
        ("camera response", "PlanckianJitter", lambda: A.PlanckianJitter(mode="blackbody", temperature_limit=(5000, 7000), p=1.0)),
        ("camera response", "RandomBrightnessContrast",
         lambda: A.RandomBrightnessContrast(brightness_limit=(0.2, 0.2), contrast_limit=(0.2, 0.2), p=1.0)),
        ("defocus", f"Defocus r{radius}", lambda: A.Defocus(radius=(radius, radius), alias_blur=(0.1, 0.1), p=1.0)),
        ("jpeg", "ImageCompression q55", lambda: A.ImageCompression(quality_range=(55, 55), p=1.0)),
    ]
    for key, name, make in specs:
        for kind in ("u8", "f32"):
            rows[key].peers.append(Peer("Albumentations", f"{name} {kind}", kind, _albumentations_call(make),
                                        same_physics=name == "ShotNoise"))


def _rows(libs: dict[str, Any], pixel_mm: float) -> list[Row]:
    """The compared operators, each with its floor, and their peers (only the installed libraries)."""
    from c3_fundus.operators.camera_response import CameraResponse
    from c3_fundus.operators.field_of_view import FieldOfView
    from c3_fundus.operators.illumination import Illumination, Vignetting
    from c3_fundus.operators.jpeg import Jpeg
    from c3_fundus.operators.optics import Optics
    from c3_fundus.operators.sensor import Sensor

    def row(name: str, op: Any, wanted: float, note: str) -> Row:
        sev = admissible(op, wanted)
        return Row(name, op, sev, note=note, floor=FLOORS[op.id](op, sev))

    rows = {
        "illumination": row("illumination", Illumination(), 1.2, "ours: decentred spot / ring gain, 1.2 stops, in linear light"),
        "vignetting": row("vignetting", Vignetting(), 0.45, "ours: cos^4 fall-off, 45 % lost at the FOV edge"),
        "sensor": row("sensor", Sensor(), FULL_WELL_E, "ours: Poisson + read noise, PRNU/DSNU, 10-bit ADC, RGGB mosaic + demosaic"),
        "camera response": row("camera response", CameraResponse(), 1.0, "ours: exposure, white balance, gamma"),
        "defocus": row("defocus", Optics(components=("defocus",)), 1.0, "ours: supersampled disc PSF, radius 60-120 um"),
        "haze": row("haze", Optics(components=("haze",)), 1.0, "ours: media haze 12.5-25 %, Gaussian scatter 0.3-0.8 mm"),
        "jpeg": row("jpeg", Jpeg(), 50.0, "ours: quality 50-60, YCbCr 4:2:0, 8x8 DCT in torch"),
        "field of view": row("field of view", FieldOfView(), FieldOfView.severity.extreme, "ours: FOV diameter loss, soft edge"),
    }
    full_well = rows["sensor"].severity
    if "Albumentations" in libs:
        _albumentations_peers(libs["Albumentations"], rows, pixel_mm, full_well)
    if "imagecorruptions" in libs:
        corrupt = libs["imagecorruptions"].corrupt
        for key, name, sev in (("illumination", "brightness", 2), ("sensor", "gaussian_noise", 1), ("sensor", "shot_noise", 3),
                               ("defocus", "defocus_blur", 2), ("jpeg", "jpeg_compression", 1)):
            rows[key].peers.append(Peer("imagecorruptions", f"{name} s{sev}", "u8",
                                        lambda x, n=name, s=sev: corrupt(x, corruption_name=n, severity=s),
                                        same_physics=name == "shot_noise"))
    if "MedMNIST-C" in libs:
        mc = libs["MedMNIST-C"]
        # retinamnist settings of MedMNIST-C's registry where it has one (chestmnist's for shot noise and gamma)
        specs = [
            ("illumination", "Brightness(0.7)", mc["enhance"].Brightness([0.9, 0.8, 0.7, 0.6, 0.5]), 2),
            ("sensor", "GaussianNoise[0]", mc["noise"].GaussianNoise([0.04, 0.08, 0.12, 0.16, 0.20]), 0),
            ("sensor", "ShotNoise[0]", mc["noise"].ShotNoise([60, 25, 18, 10, 5]), 0),
            ("camera response", "GammaCorrection(1.3)", mc["enhance"].GammaCorrection([1.1, 1.2, 1.3, 1.4, 1.6]), 2),
            ("jpeg", "JPEGCompression(30)", mc["compression"].JPEGCompression([30, 25, 20, 10, 5]), 0),
        ]
        if "filter" in mc:
            specs.append(("defocus", "DefocusBlur(4, 0.1)", mc["filter"].DefocusBlur([(4, 0.1), (5, 0.2), (6, 0.3), (7, 0.4), (8, 0.5)]), 0))
        for key, name, c, sev in specs:
            rows[key].peers.append(Peer("MedMNIST-C", name, "pil", lambda x, c=c, s=sev: c.apply(x, severity=s),
                                        same_physics=name.startswith("ShotNoise")))
    return list(rows.values())


def _photographs(size: int) -> tuple[Any, Any, Any]:
    """K phantom photographs: sRGB (K, 3, H, W), lesion masks (K, 3, H, W), FOV (K, 1, H, W)."""
    import torch

    from c3_core.seeding import generator_from_seed
    from c3_fundus.data.phantom import render_fundus

    drawn = [render_fundus(i % 5, generator_from_seed(20261123 + i), size=size) for i in range(K)]
    return (torch.stack([d.image for d in drawn]).float().contiguous(), torch.stack([d.lesions for d in drawn]).float(),
            torch.stack([d.fov for d in drawn]).float())


def main(argv: list[str] | None = None) -> int:
    ap = operator_bench_arguments(__doc__, "64 x 64 images", device="torch device for ours (peers always run on the CPU)")
    args = ap.parse_args(argv)
    started = time.perf_counter()

    libs = load_image_peers("bench_fundus")
    if not libs:
        print("bench_fundus: no peer library installed (pip install albumentations imagecorruptions medmnistc): floors only",
              file=sys.stderr)
    import numpy as np
    import torch
    from PIL import Image

    from c3_core.batch import Batch
    from c3_fundus.data.demo import demo_spacing

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
    pixel_mm = demo_spacing(size)
    repeats = 1 if args.quick else max(1, args.repeats)

    srgb, lesions, fov = _photographs(size)
    hwc = srgb.permute(0, 2, 3, 1).numpy()  # (K, H, W, 3) in [0, 1]
    images = {
        "f32": [np.ascontiguousarray(hwc[i], dtype=np.float32) for i in range(K)],
        "u8": [np.round(hwc[i] * 255.0).astype(np.uint8) for i in range(K)],
    }
    images["pil"] = [Image.fromarray(x) for x in images["u8"]]  # mode "RGB"
    spacing = ((pixel_mm, pixel_mm),)

    def batch(n: int) -> Batch:
        return Batch(srgb[:n].clone().to(device), tuple(f"bench-{i:03d}" for i in range(n)), "fundus", "srgb", spacing * n,
                     mask=lesions[:n].clone().to(device), extras={"fov": fov[:n].clone().to(device)})

    batches = {1: batch(1), K: batch(K)}
    rows = _rows(libs, pixel_mm)
    if args.only:
        wanted = [w.strip() for w in args.only.split(",") if w.strip()]
        rows = [r for r in rows if any(w in r.name for w in wanted)]
    np.random.seed(0)  # imagecorruptions' and MedMNIST-C's only source of randomness

    versions = peer_versions(libs) or "no peer library"
    print(f"c3-fundus vs its floors and {versions}; torch {torch.__version__}, numpy {np.__version__}, "
          f"OpenCV {cv2.__version__ if cv2 else '-'}, Python {platform.python_version()}")
    print(f"CPU: {cpu_model()}, {os.cpu_count()} logical cores; threads {threads}; ours on {device}; "
          f"images 3x{size}x{size} sRGB, {pixel_mm * 1000:.1f} um/px; median of {repeats} after 1 warm-up; "
          f"load average {load_average()} at start" + ("  [QUICK: smoke run, numbers not meaningful]" if args.quick else ""))
    print("times in ms per batch; ratio = ours apply / floor; peer speedup = peer / ours s+a (above 1: ours faster); "
          "peers loop over the images")
    verdicts = compare(rows, batches, images, repeats, sync, name_width=15, peer_width=48)
    verdicts += _round_trip_verdicts(rows, batches, repeats, sync)
    sensor = next((r for r in rows if r.name == "sensor"), None)  # absent when --only leaves it out
    print("notes: " + "; ".join(f"{r.name}: {r.note}" for r in rows if r.note)
          + (f"; peers: ShotNoise scale 1/{sensor.severity:g} (our full well) where the sensor row runs" if sensor else "")
          + "; MedMNIST-C runs on PIL images.")
    print()
    print_verdicts(verdicts, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
