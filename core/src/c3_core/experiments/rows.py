"""The compared methods (table rows): baselines, C³ and its ablations, as training options."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Row:
    """One method.

    Attributes:
        key: short id used in folder names and JSON.
        label: the table's row label.
        augment: the Trainer's baseline augmentation.
        consistency: whether the consistency term is on (λ from the budget) or off (λ = 0).
        use_gate: whether the validity gate filters the training counterfactuals.
        members: which neighbourhood members train it: ``all``, ``operators`` or ``editors``.
        tta: evaluate with test-time augmentation instead of a plain forward.
        weights_of: the row whose trained weights this row evaluates (TTA reuses standard's).
    """

    key: str
    label: str
    augment: str = "standard"
    consistency: bool = False
    use_gate: bool = True
    members: str = "all"
    tta: bool = False
    weights_of: str | None = None

    @property
    def trains(self) -> bool:
        return self.weights_of is None

    def train_options(self, lam: float) -> dict[str, Any]:
        """The :class:`~c3_core.training.trainer.TrainOptions` fields this row sets."""
        return {"augment": self.augment, "lam": lam if self.consistency else 0.0, "use_gate": self.use_gate}


ROWS: tuple[Row, ...] = (
    Row("standard", "Standard augmentation"),
    Row("augmix", "AugMix", augment="augmix"),
    Row("tta", "TTA (standard model)", tta=True, weights_of="standard"),
    Row("c3", "C³", consistency=True),
    Row("physics", "C³ physics-only", consistency=True, members="operators"),
    Row("editors", "C³ editor-only", consistency=True, members="editors"),
    Row("nogate", "C³ no-gate", consistency=True, use_gate=False),
)


BASELINE = "standard"  # the row every other row is compared with, case by case (paired differences)


def rows_by_key(keys: Sequence[str] | None = None) -> tuple[Row, ...]:
    """The rows named by ``keys`` (all when None), in table order; unknown keys raise ValueError."""
    if keys is None:
        return ROWS
    known = {r.key: r for r in ROWS}
    bad = [k for k in keys if k not in known]
    if bad:
        raise ValueError(f"unknown row(s) {bad} (known: {', '.join(known)})")
    missing = {known[k].weights_of for k in keys if known[k].weights_of} - set(keys)
    if missing:
        raise ValueError(f"row(s) {sorted(k for k in keys if known[k].weights_of in missing)} need {sorted(missing)}")
    return tuple(r for r in ROWS if r.key in keys)
