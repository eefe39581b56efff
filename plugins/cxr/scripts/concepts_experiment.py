"""CARS-style experiment: fine-tune the CXR demo reference model on a synthetic, concept-edited subset.

1. Load the cached demo CNN (``cxr.demo_cnn``, trained on the demo training split).
2. Synthetic subset: for every concept editor (insert / delete each of the five findings), edit up
   to ``--per-editor`` training cases that lack / carry the finding, at a severity drawn from
   ``--alpha`` (latent standard deviations); keep only the edits the editor's ``check`` admits
   (anatomy IoU >= tau, no change outside the region); label them with the intervened finding set.
3. Fine-tune copies of the model for the same number of steps from the same start and seed:
   *control* on the real training split only, *mixed* on the real split plus the subset, and
   *synthetic* on the subset alone.
4. Evaluate before and after on the held-out demo test split: macro PR-AUC (average precision),
   ECE (15 equal-width bins, binary per finding, mean over findings), Brier (mean over
   cases x findings) and predictive entropy (mean Bernoulli entropy, nats).

    python plugins/cxr/scripts/concepts_experiment.py --seeds 0 1 2 --out concepts.json [--device cuda]

Everything is seeded; on one device the same arguments give the same numbers.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor
from torch.nn import functional as F

from c3_core.batch import Batch, collate, concat
from c3_core.metrics.classification import brier_score, macro_auprc, macro_auroc, multilabel_ece
from c3_core.model import ModelBundle
from c3_core.seeding import derive_seed, generator_from_seed
from c3_cxr.data.demo import ChestDemo
from c3_cxr.editors.concepts import CONCEPTS, EDITORS, intervened_labels
from c3_cxr.models import demo_cnn

ARMS = ("control", "mixed", "synthetic")


def predictive_entropy(probs: Tensor) -> float:
    """Mean Bernoulli entropy -p ln p - (1-p) ln(1-p) over cases and findings (nats, max ln 2)."""
    p = probs.double().clamp(1e-12, 1 - 1e-12)
    return float((-(p * p.log()) - (1 - p) * (1 - p).log()).mean())


def evaluate(bundle: ModelBundle, batch: Batch, device: str) -> dict[str, float]:
    """Held-out metrics of ``bundle`` on ``batch`` (probabilities from the sigmoid of the logits)."""
    logits = torch.cat([bundle.logits(chunk.to(device)).cpu() for chunk in batch.image.split(64)])
    probs = torch.sigmoid(logits.float())
    y = batch.label
    return {
        "macro_pr_auc": macro_auprc(probs, y).value,
        "macro_auroc": macro_auroc(probs, y).value,
        "ece": multilabel_ece(probs, y, n_bins=15),
        "brier": brier_score(probs, y),
        "entropy": predictive_entropy(probs),
    }


def synthetic_subset(
    train: Batch, per_editor: int, alphas: Sequence[float], seed: int, device: str, other_labels: str = "keep"
) -> tuple[Batch, list[dict[str, float | str]]]:
    """Admitted concept edits of training cases with intervened labels, and per-editor statistics.

    ``other_labels``: ``"keep"`` the recorded labels of the findings not edited, or mark them
    ``"unknown"`` (NaN, ignored by the loss) because an edit may move them too.
    """
    parts: list[Batch] = []
    stats: list[dict[str, float | str]] = []
    for cls in EDITORS:
        col = next(c.label_index for c in CONCEPTS if c.name == cls.concept)
        want = train.label[:, col] < 0.5 if cls.sign > 0 else train.label[:, col] > 0.5
        rows = torch.nonzero(want).flatten()[:per_editor].tolist()
        src = train.select(rows).to(device)
        editor = cls()
        params = []
        for i in range(src.size):
            g = generator_from_seed(derive_seed(seed, "concepts-experiment", cls.id, src.exam_ids[i]))
            alpha = alphas[int(torch.randint(0, len(alphas), (1,), generator=g))]
            params.append(editor.sample_params(src.case_info(i), g, alpha))
        out = editor.apply(src, params)
        keep = [i for i, why in enumerate(editor.check(src, out, params)) if why is None]
        stats.append({"editor": cls.id, "candidates": src.size, "admitted": len(keep)})
        if keep:
            kept = out.select(keep).to("cpu")
            ids = tuple(f"{e}+{cls.id}" for e in kept.exam_ids)
            labels = intervened_labels(kept.label, cls)
            if other_labels == "unknown":
                labels = torch.where(torch.arange(labels.shape[1]) == col, labels, torch.full_like(labels, float("nan")))
            parts.append(kept.replace(exam_ids=ids, label=labels))
    return _concat(parts), stats


@torch.no_grad()
def editor_effects(bundle: ModelBundle, test: Batch, alpha: float, device: str) -> list[dict[str, float | str]]:
    """Each editor at ``alpha`` on every held-out case lacking (insert) / carrying (delete) its finding:
    the admitted fraction, mean anatomy IoU, and the change of the target and the other findings'
    probabilities (before fine-tuning)."""
    rows = []
    for cls in EDITORS:
        col = next(c.label_index for c in CONCEPTS if c.name == cls.concept)
        want = test.label[:, col] < 0.5 if cls.sign > 0 else test.label[:, col] > 0.5
        src = test.select(torch.nonzero(want).flatten().tolist()).to(device)
        editor = cls()
        g = torch.Generator().manual_seed(0)
        params = [editor.sample_params(src.case_info(i), g, alpha) for i in range(src.size)]
        out = editor.apply(src, params)
        admitted = torch.tensor([r is None for r in editor.check(src, out, params)])
        iou = torch.stack(list(editor.anatomy_iou(src, out).values())).amin(0)
        delta = (torch.sigmoid(bundle.logits(out.image)) - torch.sigmoid(bundle.logits(src.image))).cpu()
        others = torch.cat([delta[:, :col], delta[:, col + 1 :]], 1)
        rows.append({
            "editor": cls.id, "cases": src.size, "admitted": float(admitted.float().mean()), "min_iou_mean": float(iou.mean()),
            "target_delta": float(delta[:, col].mean()), "target_moved": float((delta[:, col] * cls.sign > 0).float().mean()),
            "others_abs_delta": float(others.abs().mean()),
        })  # fmt: skip
    return rows


def _concat(parts: Sequence[Batch]) -> Batch:
    return concat(list(parts))


def fine_tune(bundle: ModelBundle, data: Batch, *, steps: int, batch_size: int, lr: float, seed: int, device: str) -> ModelBundle:
    """A copy of ``bundle`` fine-tuned for ``steps`` AdamW steps (cosine decay) on ``data`` (masked BCE).

    Batches come from a generator seeded with ``seed``; dropout (which cannot take a generator)
    runs under a forked global RNG seeded with ``seed``, so the caller's RNG state is untouched.
    """
    devices = [torch.device(device).index or 0] if torch.device(device).type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        return _fine_tune(bundle, data, steps=steps, batch_size=batch_size, lr=lr, seed=seed, device=device)


def _fine_tune(bundle: ModelBundle, data: Batch, *, steps: int, batch_size: int, lr: float, seed: int, device: str) -> ModelBundle:
    tuned = copy.deepcopy(bundle)
    net = tuned.network.to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    g = torch.Generator().manual_seed(seed)
    order: list[int] = []
    net.train()
    for _ in range(steps):
        if len(order) < batch_size:
            order += torch.randperm(data.size, generator=g).tolist()
        idx, order = order[:batch_size], order[batch_size:]
        x = data.image[idx].to(device)
        y = data.label[idx].to(device).float()
        logits = net(tuned.prepare(x))
        keep = torch.isfinite(y)
        loss = F.binary_cross_entropy_with_logits(logits[keep], y[keep])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    net.eval()
    return tuned


def _load(split: str, n: int | None) -> Batch:
    ds = ChestDemo(split, n=n)
    return collate([ds[i] for i in range(len(ds))])


def _mean_sd(values: Sequence[float]) -> tuple[float, float]:
    m = sum(values) / len(values)
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return m, sd


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="torch device for editing, fine-tuning and evaluation (e.g. cuda)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="fine-tuning seeds (one run per arm each)")
    ap.add_argument("--per-editor", type=int, default=40, help="training cases edited per editor (before the gate)")
    ap.add_argument("--alpha", type=float, nargs="+", default=[1.0, 2.0, 3.0], help="severities drawn per edit (latent std)")
    ap.add_argument("--effect-alpha", type=float, default=2.0, help="severity of the held-out editor-effect table (latent std)")
    ap.add_argument("--other-labels", choices=("keep", "unknown"), default="keep", help="labels of the findings an edit did not target")
    ap.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS), help="which fine-tuning arms to run")
    ap.add_argument("--steps", type=int, default=100, help="fine-tuning steps of each arm")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--test-cases", type=int, default=None, help="held-out demo cases (default: the whole test split)")
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = ap.parse_args(argv)
    if args.steps < 1 or args.per_editor < 1:
        ap.error("--steps and --per-editor must be >= 1")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error(f"--device {args.device}: CUDA is not available")

    t0 = time.perf_counter()
    base = demo_cnn(weights="demo", device=args.device)
    train, test = _load("train", None), _load("test", args.test_cases)
    synth, stats = synthetic_subset(train, args.per_editor, args.alpha, seed=0, device=args.device, other_labels=args.other_labels)
    mixed = _concat([train, synth])
    t_synth = time.perf_counter() - t0

    effects = editor_effects(base, test, args.effect_alpha, args.device)
    results: dict[str, object] = {"before": evaluate(base, test, args.device), "runs": [], "effects": effects}
    for seed in args.seeds:
        for arm, data in (("control", train), ("mixed", mixed), ("synthetic", synth)):
            if arm not in args.arms:
                continue
            tuned = fine_tune(base, data, steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=seed, device=args.device)
            results["runs"].append({"arm": arm, "seed": seed, **evaluate(tuned, test, args.device)})  # type: ignore[union-attr]
    results.update(
        editors=stats, synthetic_cases=synth.size, real_cases=train.size, test_cases=test.size,
        args={k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        seconds={"synthesis": round(t_synth, 1), "total": round(time.perf_counter() - t0, 1)},
    )  # fmt: skip

    keys = ("macro_pr_auc", "macro_auroc", "ece", "brier", "entropy")
    print("| model | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    print("| before | " + " | ".join(f"{results['before'][k]:.4f}" for k in keys) + " |")  # type: ignore[index]
    for arm in args.arms:
        runs = [r for r in results["runs"] if r["arm"] == arm]  # type: ignore[union-attr]
        cells = []
        for k in keys:
            m, sd = _mean_sd([r[k] for r in runs])
            cells.append(f"{m:.4f} ± {sd:.4f}" if len(runs) > 1 else f"{m:.4f}")
        print(f"| after, {arm} ({len(runs)} seed{'s' if len(runs) > 1 else ''}) | " + " | ".join(cells) + " |")
    print(f"\n| editor (alpha {args.effect_alpha:g}, held-out) | cases | admitted | anatomy IoU | Δp target | moved | mean abs Δp others |")
    print("|---|---|---|---|---|---|---|")
    for e in effects:
        print(f"| `{e['editor']}` | {e['cases']} | {e['admitted']:.2f} | {e['min_iou_mean']:.3f} | {e['target_delta']:+.3f} | {e['target_moved']:.2f} | {e['others_abs_delta']:.3f} |")
    print("\nadmitted edits: " + ", ".join(f"{s['editor']} {s['admitted']}/{s['candidates']}" for s in stats))
    print(f"synthetic {synth.size} + real {train.size} training cases; {test.size} held-out; {results['seconds']}")
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
