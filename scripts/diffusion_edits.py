"""Measure the diffusion editors on a modality's demo test split: edit size, lesion consistency, agreement.

For every registered diffusion editor of the chosen modalities, the first ``--cases`` demo test
cases are edited at each strength in ``--strengths`` (params drawn from ``generator_from_seed(i)``)
under three settings of the editor's options:

* ``default``       — lesion pull 0.5, lesion re-imposed (RePaint), task-model agreement step 0.2;
* ``no agreement``  — the same without the agreement term (``agreement_step=0``);
* ``unconstrained`` — no lesion pull, no re-imposition, no agreement.

Per editor, strength and setting it prints: the mean |change| outside the lesion mask (domain
units: line integral for CXR, sRGB for fundus), the ratio of the mean |change| inside the lesion
to outside (cases that have a lesion), the mean over cases of the task model's largest probability
change ``max_f |p_f(x') - p_f(x)|`` and the share of cases with that change at most δ = 0.2 (the
default classification gate threshold). The task model is the demo model the default scorer uses,
so the agreement columns measure what the term optimises, not an independent judge.

    python scripts/diffusion_edits.py --modality cxr fundus --cases 32 --strengths 0.1 0.3 0.5
    python scripts/diffusion_edits.py --modality cxr --only cxr.diffusion --weights fitted.safetensors
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from c3_core.batch import collate
from c3_core.editors.diffusion import DiffusionEditor
from c3_core.plugins.host import PluginHost
from c3_core.seeding import generator_from_seed

SETTINGS = {
    "default": {},
    "no agreement": {"agreement_step": 0.0},
    "unconstrained": {"lesion_weight": 0.0, "reimpose": 0.0, "agreement_step": 0.0},
}
DELTA = 0.2


@torch.no_grad()
def _probs(scorer, images: torch.Tensor) -> torch.Tensor:  # noqa: ANN001 - a Scorer
    return torch.cat([scorer(chunk) for chunk in images.split(16)])


def measure(cls: type[DiffusionEditor], batch, strengths: list[float], weights: str | None = None) -> list[dict]:  # noqa: ANN001 - a Batch
    """Rows for one editor: (strength, setting) -> the four measures (``weights``: a fitted denoiser)."""
    rows = []
    scorer = cls().default_scorer()
    p0 = _probs(scorer, batch.image)
    for setting, options in SETTINGS.items():
        ed = cls(weights=weights, **options)
        lesion = ed.lesion_mask(batch)
        for s in strengths:
            params = [ed.sample_params(batch.case_info(i), generator_from_seed(i), s) for i in range(batch.size)]
            out = ed.apply(batch, params).image
            diff = (out - batch.image).abs().mean(1, keepdim=True)  # mean over channels, (B, 1, H, W)
            outside = 1.0 - lesion if lesion is not None else torch.ones_like(diff)
            mean_out = (diff * outside).flatten(1).sum(1) / outside.flatten(1).sum(1).clamp_min(1)
            ratio = float("nan")
            if lesion is not None:
                has = lesion.flatten(1).sum(1) > 0
                if bool(has.any()):
                    mean_in = (diff * lesion).flatten(1).sum(1) / lesion.flatten(1).sum(1).clamp_min(1)
                    ratio = float((mean_in[has] / mean_out[has].clamp_min(1e-12)).mean())
            shift = (_probs(scorer, out) - p0).abs().amax(1)
            rows.append({
                "editor": cls.id, "strength": s, "setting": setting, "outside": float(mean_out.mean()),
                "in_out": ratio, "max_dp": float(shift.mean()), "within_delta": float((shift <= DELTA).float().mean()),
            })  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modality", nargs="+", default=["cxr", "fundus"])
    ap.add_argument("--cases", type=int, default=32)
    ap.add_argument("--strengths", type=float, nargs="+", default=[0.1, 0.3, 0.5])
    ap.add_argument("--only", nargs="*", default=None, help="editor ids to measure (default: every diffusion editor)")
    ap.add_argument("--weights", default=None, help="a denoiser from `c3 editor fit` (.safetensors) instead of the demo one")
    args = ap.parse_args(argv)
    if args.cases < 1:
        print("error: --cases must be >= 1", file=sys.stderr)
        return 2
    host = PluginHost().load()
    t0 = time.perf_counter()
    print("| editor | strength | setting | mean \\|Δ\\| outside lesion | inside / outside | mean max \\|Δp\\| | share ≤ δ |")
    print("|---|---|---|---|---|---|---|")
    found = 0
    for modality in args.modality:
        ds = host.demo_dataset(modality).load()(split="test")
        batch = collate([ds[i] for i in range(min(args.cases, len(ds)))])
        for c in host.registry("editors").for_modality(modality):
            cls = c.load()
            if not (isinstance(cls, type) and issubclass(cls, DiffusionEditor)) or (args.only and c.id not in args.only):
                continue
            found += 1
            for r in measure(cls, batch, args.strengths, args.weights):
                print(f"| `{r['editor']}` | {r['strength']:g} | {r['setting']} | {r['outside']:.4f} | {r['in_out']:.3f} | "
                      f"{r['max_dp']:.3f} | {r['within_delta']:.2f} |", flush=True)  # fmt: skip
    if not found:
        print(f"error: no diffusion editor registered for {args.modality}", file=sys.stderr)
        return 2
    print(f"total {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
