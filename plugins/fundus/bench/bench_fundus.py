"""c3-fundus operators against Albumentations, imagecorruptions and MedMNIST-C, side by side in one run.

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

Ours: each repeat draws the params with ``op.sample_params(case_info(i), generator_from_seed(i),
severity)``, reads the clock, then runs ``op.apply(batch, params)``: "ours apply" excludes the
sampling, "ours s+a" is sampling plus apply (what a peer call includes; used for the ratios).
Peers draw from their own generators, seeded once here (Albumentations ``set_random_seed(0)``,
imagecorruptions and MedMNIST-C use NumPy's global state: ``np.random.seed(0)``).

Every time is the median of N repeats (``time.perf_counter``) after one untimed warm-up call,
which also checks that the peer changed the image (a peer that raises is reported and skipped).
Target (issue 5), printed PASS / FAIL per operator and setting: ours s+a at least 5x faster than
the fastest peer of its row.

Run: ``nox -s bench -- fundus`` (``--quick``: 64 x 64 images, 1 repeat, a smoke run).
Threads: ``OMP_NUM_THREADS`` (default 2) for torch and for OpenCV (``cv2.setNumThreads``).
``--device cuda`` runs ours on a GPU (peers stay on the CPU; the clock is read after a sync).
Exits with status 2 when none of the peer libraries is installed; a missing one is skipped.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

from c3_core.benchmarking import Peer, Row, compare, cpu_model, load_image_peers, peer_versions

FULL_SIZE = 512  # px
QUICK_SIZE = 64
K = 8  # images in the batched setting
SPEEDUP_TARGET = 5.0  # ours at least this many times faster than the fastest peer
FULL_WELL_E = 800.0  # ours: sensor severity (photo-electrons at full scale)














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


def _albumentations_peers(A: Any, rows: dict[str, Row], pixel_mm: float) -> None:
    """Albumentations equivalents, each on uint8 and on float32 images."""
    radius = max(1, round(0.09 / pixel_mm))  # ours: blur-circle radius U(60, 120) um at severity 1, mean 90 um
    specs: list[tuple[str, str, Callable[[], Any]]] = [
        ("illumination", "Illumination gaussian", lambda: A.Illumination(mode="gaussian", intensity_range=(0.2, 0.2), p=1.0)),
        ("illumination", "RandomBrightnessContrast",
         lambda: A.RandomBrightnessContrast(brightness_limit=(0.2, 0.2), contrast_limit=(0.0, 0.0), p=1.0)),
        ("vignetting", "Illumination centred", lambda: A.Illumination(mode="gaussian", effect_type="brighten", intensity_range=(0.2, 0.2),
                                                                      center_range=(0.5, 0.5), sigma_range=(0.5, 0.5), p=1.0)),
        ("sensor", "GaussNoise", lambda: A.GaussNoise(std_range=(0.05, 0.05), p=1.0)),
        ("sensor", "ShotNoise", lambda: A.ShotNoise(scale_range=(1.0 / FULL_WELL_E, 1.0 / FULL_WELL_E), p=1.0)),
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
            rows[key].peers.append(Peer("Albumentations", f"{name} {kind}", kind, _albumentations_call(make)))


def _rows(libs: dict[str, Any], pixel_mm: float) -> list[Row]:
    """The compared operators and their peers (only the installed libraries)."""
    from c3_fundus.operators.camera_response import CameraResponse
    from c3_fundus.operators.illumination import Illumination, Vignetting
    from c3_fundus.operators.jpeg import Jpeg
    from c3_fundus.operators.optics import Optics
    from c3_fundus.operators.sensor import Sensor

    rows = {
        "illumination": Row("illumination", Illumination(), 1.2, note="ours: decentred spot / ring gain, 1.2 stops, in linear light"),
        "vignetting": Row("vignetting", Vignetting(), 0.45, note="ours: cos^4 fall-off, 45 % lost at the FOV edge"),
        "sensor": Row("sensor", Sensor(), FULL_WELL_E, note="ours: Poisson + read noise, PRNU/DSNU, 10-bit ADC, RGGB mosaic + demosaic"),
        "camera response": Row("camera response", CameraResponse(), 1.0, note="ours: exposure, white balance, gamma"),
        "defocus": Row("defocus", Optics(components=("defocus",)), 1.0, note="ours: supersampled disc PSF, radius 60-120 um"),
        "jpeg": Row("jpeg", Jpeg(), 50.0, note="ours: quality 50-60, YCbCr 4:2:0, 8x8 DCT in torch"),
    }
    if "Albumentations" in libs:
        _albumentations_peers(libs["Albumentations"], rows, pixel_mm)
    if "imagecorruptions" in libs:
        corrupt = libs["imagecorruptions"].corrupt
        for key, name, sev in (("illumination", "brightness", 2), ("sensor", "gaussian_noise", 1), ("sensor", "shot_noise", 3),
                               ("defocus", "defocus_blur", 2), ("jpeg", "jpeg_compression", 1)):
            rows[key].peers.append(Peer("imagecorruptions", f"{name} s{sev}", "u8",
                                        lambda x, n=name, s=sev: corrupt(x, corruption_name=n, severity=s)))
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
            rows[key].peers.append(Peer("MedMNIST-C", name, "pil", lambda x, c=c, s=sev: c.apply(x, severity=s)))
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
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="64 x 64 images, 1 repeat (smoke run)")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats per measurement (median)")
    ap.add_argument("--only", default="", help="comma-separated row names (substring match) to run")
    ap.add_argument("--device", default="cpu", help="torch device for ours (peers always run on the CPU)")
    args = ap.parse_args(argv)
    started = time.perf_counter()

    libs = load_image_peers("bench_fundus")
    if not libs:
        print("bench_fundus: no peer library installed (pip install albumentations imagecorruptions medmnistc)", file=sys.stderr)
        return 2
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

    versions = peer_versions(libs)
    print(f"c3-fundus vs {versions}; torch {torch.__version__}, numpy {np.__version__}, "
          f"OpenCV {cv2.__version__ if cv2 else '-'}, Python {platform.python_version()}")
    print(f"CPU: {cpu_model()}, {os.cpu_count()} logical cores; threads {threads}; ours on {device}; "
          f"images 3x{size}x{size} sRGB, {pixel_mm * 1000:.1f} um/px; median of {repeats} after 1 warm-up"
          + ("  [QUICK: smoke run, numbers not meaningful]" if args.quick else ""))
    print("times in ms per batch; speedup = peer / ours s+a (above 1: ours faster); peers loop over the images")
    verdicts = compare(rows, batches, images, repeats, sync, SPEEDUP_TARGET, name_width=15, peer_width=48)
    failed = sum(v.startswith("FAIL") for v in verdicts)
    print("notes: " + "; ".join(f"{r.name}: {r.note}" for r in rows if r.note)
          + f"; peers: ShotNoise scale 1/{FULL_WELL_E:g} (our full well), MedMNIST-C runs on PIL images.")
    print()
    for v in verdicts:
        print(v)
    print(f"{failed} target(s) failed" if failed else "all targets met")
    print(f"total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
