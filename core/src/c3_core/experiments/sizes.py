"""Experiment sizes: ``quick`` (smoke, minutes), ``default`` (< 1 h on a 2-core CPU), ``powered``
(seeded initialisation, 3 seeds, 1,000 test cases: a few hours on a 2-core CPU), ``full`` (GPU).

A size fixes a default training budget (epochs, cases, batch, learning rate, K counterfactuals
per case during training) and evaluation budget (test cases, K per case for agreement / utility /
flip rate, TTA views, bootstrap replicates). A plugin whose cohort needs other numbers (small
3-D volumes, a smaller train split) declares the fields that differ, per size, in its
:class:`~c3_core.experiment_spec.ExperimentSpec` (``budgets``); :meth:`Size.budget` applies them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

EDITOR_LEVELS = (0.1, 0.2)  # strengths of the admissible editors in every training neighbourhood (low: label-preserving)


@dataclass(frozen=True)
class Budget:
    """One modality's budget within a size.

    Attributes:
        epochs: training epochs per run.
        train_cases: training cases used (the first N of the train split; None = all).
        test_cases: evaluation cases (the first N of the in-domain split; None = all).
        batch_size: training batch size.
        lr: peak AdamW learning rate.
        k_train: counterfactuals drawn per case and step (C³ rows).
        k_eval: counterfactuals per case for agreement, utility and flip rate.
        tta_views: augmented views averaged by the TTA row.
        n_boot: bootstrap replicates of the seed-0 confidence intervals.
        lam: consistency weight λ of the C³ rows.
        lam_warmup_epochs: epochs over which λ (C³ rows) and AugMix's JSD weight ramp linearly
            from 0 to their value (0: full weight from the first step).
        init: starting weights of every row: ``"demo"`` (fine-tune the plugin's demo reference
            model, trained on the same train split) or None (random initialisation, seeded).
    """

    epochs: int = 4
    train_cases: int | None = None
    test_cases: int | None = None
    batch_size: int = 16
    lr: float = 3e-3
    k_train: int = 1
    k_eval: int = 4
    tta_views: int = 4
    n_boot: int = 200
    lam: float = 1.0
    init: str | None = "demo"
    lam_warmup_epochs: float = 0.0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "k_train", "k_eval", "tta_views", "n_boot"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"budget: {name} must be >= 1, got {getattr(self, name)}")
        if not float(self.lam_warmup_epochs) >= 0.0:
            raise ValueError(f"budget: lam_warmup_epochs must be >= 0, got {self.lam_warmup_epochs}")
        for name in ("train_cases", "test_cases"):
            v = getattr(self, name)
            if v is not None and int(v) < 1:
                raise ValueError(f"budget: {name} must be >= 1 or None, got {v}")


@dataclass(frozen=True)
class Size:
    """A named experiment size: the default budget, default seeds and device."""

    name: str
    seeds: int
    base: Budget
    device: str = "cpu"
    note: str = ""
    left_out: Mapping[str, str] | None = None  # row key -> why the size runs it only when --rows names it

    def budget(self, declared: Mapping[str, Any] | None = None) -> Budget:
        """The default budget with ``declared`` fields (a plugin's budget fields for this size) applied.

        Raises ValueError naming an unknown field or a bad value.
        """
        if declared is not None and not isinstance(declared, Mapping):
            raise TypeError(f"size {self.name}: declared budget fields must be a mapping, got {declared!r}")
        if not declared:
            return self.base
        known = {f.name for f in fields(Budget)}
        unknown = sorted(set(declared) - known)
        if unknown:
            raise ValueError(f"size {self.name}: unknown budget field(s) {unknown} (known: {', '.join(sorted(known))})")
        return replace(self.base, **dict(declared))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "seeds": self.seeds, "device": self.device, "note": self.note,
                "budget": asdict(self.base)}


QUICK = Size(
    "quick", 1,
    Budget(epochs=1, train_cases=16, test_cases=12, batch_size=8, lr=1e-3, k_eval=1, tta_views=2, n_boot=20),
    note="smoke run: every code path once, numbers meaningless",
)

DEFAULT = Size(
    "default", 2,
    Budget(epochs=2, train_cases=128, test_cases=64, batch_size=16, lr=1e-3, k_eval=2, tta_views=2),
    note="each row fine-tunes the demo reference model briefly on part of the train split; sized to finish "
    "in under an hour on a 2-core CPU shared with other jobs",
)

FULL = Size(
    "full", 5,
    Budget(epochs=40, batch_size=32, lr=3e-3, k_train=2, k_eval=8, tta_views=8, n_boot=1000, init=None),
    device="cuda",
    note="every case of the embedded cohorts, every row trained from a seeded random initialisation, 5 seeds, "
    "K = 2 in training and 8 in evaluation; meant for one GPU (documented, not run on the CPU machine)",
)

POWERED = Size(
    "powered", 3,
    Budget(epochs=12, train_cases=800, test_cases=1000, batch_size=32, lr=3e-3, k_eval=2, tta_views=4, n_boot=500,
           init=None),
    note="every row trained from a seeded random initialisation with the demo recipe's schedule (12 epochs, batch 32, "
    "lr 3e-3) on 800 training cases, 3 seeds, 1,000 test cases; sized for about 2 hours per modality on one core "
    "of a 2-core CPU, resumable",
    left_out={"editors": "editor-only trains every counterfactual through a diffusion editor (SDEdit + guidance, "
              "about 0.24 s per 128² image on one CPU core, about 40 min per seed at this size); run it with --rows "
              "or on a GPU (--full)"},
)

SIZES: Mapping[str, Size] = {"quick": QUICK, "default": DEFAULT, "powered": POWERED, "full": FULL}


def choose_size(
    *, quick: bool, full: bool, seeds: int | None = None, device: str | None = None, powered: bool = False,
    lam_warmup_epochs: float | None = None,
) -> Size:
    """The size the command's flags ask for (``--quick``, ``--powered`` and ``--full`` exclude each other);
    ``lam_warmup_epochs`` replaces the size's warm-up of the consistency terms."""
    if sum((quick, full, powered)) > 1:
        raise ValueError("--quick, --powered and --full exclude each other")
    size = QUICK if quick else FULL if full else POWERED if powered else DEFAULT
    if seeds is not None:
        if int(seeds) < 1:
            raise ValueError(f"--seeds must be >= 1, got {seeds}")
        size = replace(size, seeds=int(seeds))
    if device is not None:
        size = replace(size, device=device)
    if lam_warmup_epochs is not None:
        if not float(lam_warmup_epochs) >= 0.0:
            raise ValueError(f"--lam-warmup-epochs must be >= 0, got {lam_warmup_epochs}")
        size = replace(size, base=replace(size.base, lam_warmup_epochs=float(lam_warmup_epochs)))
    return size
