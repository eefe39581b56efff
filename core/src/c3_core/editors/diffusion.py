"""Pathology-preserving diffusion editor (C3 paper §2.3): SDEdit with lesion re-imposition and scorer agreement.

One edit of one case ``x`` (an image in the editor's intensity domain) at strength ``s`` (the
severity: the fraction of the diffusion trajectory, identity 0):

1. **Guide.** ``g = x + D(x)``: the editor's *direction* (rib-shadow contrast, haze, illumination,
   vessel contrast …; plain resampling has ``D = 0``), with an amplitude that scales with ``s``.
2. **Normalise.** ``u = 2 (v - lo) / (hi - lo) - 1`` with ``lo, hi`` the case's own
   ``low_percentile`` / ``high_percentile`` (so the working domain is about [-1, 1]), on the
   model's ``size x size`` grid (antialiased resampling).
3. **Noise** (SDEdit): ``t0 = round(s T)``, ``x_t0 = sqrt(ab_t0) u_g + sqrt(1 - ab_t0) eps`` with
   ``eps`` drawn from the params' ``noise_seed``; ``ab`` is the DDIM scheduler's alpha-bar.
4. **Denoise** with deterministic DDIM (eta = 0) over ``ceil(s * steps)`` evenly spaced timesteps
   down to ``ab = 1``, conditioned on the case's weak labels. At each step, on the prediction
   ``x0_hat = (x_t - sqrt(1 - ab_t) eps_hat) / sqrt(ab_t)`` (kept within the case's own range ±0.25):

   * *lesion consistency*: a gradient step on ``||m ⊙ (x0_hat - u_x)||²`` of size ``lesion_weight / 2``,
     i.e. ``x0_hat <- x0_hat - lesion_weight * m ⊙ (x0_hat - u_x)``;
   * *agreement*: ``L = sum_f |p_f(x(x0_hat)) - p_f(x)|`` over the scorer's vocabulary;
     ``x0_hat <- x0_hat - s * L * grad / rms(grad)`` with ``s = agreement_step``, halved (up to
     three times) until ``L`` decreases (a normalised step that shrinks as the probabilities agree);
   * the DDIM update ``x_prev = sqrt(ab_prev) x0_hat + sqrt(1 - ab_prev) eps(x0_hat)``, then
     *re-imposition* (RePaint): ``x_prev <- x_prev + w ⊙ (sqrt(ab_prev) u_x + sqrt(1 - ab_prev) eps - x_prev)``
     with ``w = clip(reimpose * m + f, 0, 1)``, ``m`` the lesion mask and ``f`` a region the editor
     freezes (e.g. outside the fundus field of view). The same ``eps`` as step 3 keeps the known
     region on its own deterministic trajectory, which ends at ``u_x`` exactly.

5. **Map back**: ``x' = x + (1 - W) ⊙ (g + up(u_edit - u_g) (hi - lo) / 2 - x)`` at full
   resolution (``W`` = ``w`` at full resolution), clipped to the domain's bounds. Wherever
   ``W = 1`` the output equals the input bit for bit; strength 0 short-circuits to the input.

Cases are edited one at a time, so a case's bytes never depend on the rest of the batch.
Lesion masks are carried to the working grid conservatively (max-pool, then one cell of dilation),
so no full-resolution lesion pixel receives an interpolated change.

Plugins subclass :class:`DiffusionEditor` with ``id``, ``modality``, ``domain``, the lesion mask
channels, the domain bounds, the direction (:meth:`DiffusionEditor.guide`), the cached default
model and the default scorer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor
from torch.nn import functional as F

from c3_core.batch import Batch, CaseInfo
from c3_core.editors.diffusion_model import DiffusionConfig, DiffusionModel, alphas_cumprod, load_model
from c3_core.editors.nets import model_on_device
from c3_core.editors.scorer import Scorer, agreement
from c3_core.functional.grid import from_grid, to_grid
from c3_core.operator import Editor, Severity
from c3_core.seeding import Draws, draw_seed, generator_from_seed, uniform

X0_MARGIN = 0.25  # x0_hat is kept within the case's normalised range widened by this much
STRENGTH = Severity("strength", "fraction of the diffusion trajectory", 0.0, 0.5, (0.1, 0.2, 0.3, 0.4, 0.5))


# ---------------------------------------------------------------------------------------------
# functional kernels
# ---------------------------------------------------------------------------------------------
def percentile_range(image: Tensor, low_q: float, high_q: float) -> tuple[Tensor, Tensor]:
    """Per-case ``(lo, hi)`` ``(B,)``: the ``low_q`` and ``high_q`` percentiles (in %) over all channels
    and pixels; ``hi`` is at least ``lo + 1e-6`` so the map to [-1, 1] is always invertible."""
    flat = image.detach().flatten(1).float().sort(dim=1).values  # sort: no size limit (torch.quantile has one)
    n = flat.shape[1]

    def at(q: float) -> Tensor:  # linear interpolation between order statistics, as torch.quantile
        pos = q / 100.0 * (n - 1)
        i = min(int(math.floor(pos)), n - 1)
        j = min(i + 1, n - 1)
        return flat[:, i] + (pos - i) * (flat[:, j] - flat[:, i])

    lo, hi = at(low_q), at(high_q)
    return lo, torch.maximum(hi, lo + 1e-6)


def to_unit(x: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
    """Domain values -> working units: ``lo`` to -1, ``hi`` to +1 (per case)."""
    lo, hi = lo.view(-1, 1, 1, 1), hi.view(-1, 1, 1, 1)
    return 2.0 * (x - lo) / (hi - lo) - 1.0


def unit_scale(lo: Tensor, hi: Tensor) -> Tensor:
    """Domain units per working unit, ``(B, 1, 1, 1)``: ``(hi - lo) / 2``."""
    return ((hi - lo) / 2.0).view(-1, 1, 1, 1)


def grid_mask(mask: Tensor, size: int) -> Tensor:
    """A ``(B, 1, H, W)`` mask in [0, 1] on the working grid, conservatively: every grid cell that
    overlaps the mask (adaptive max-pool, or nearest when enlarging), dilated by one cell."""
    if tuple(mask.shape[2:]) == (size, size):
        m = mask
    else:
        if mask.shape[2] < size or mask.shape[3] < size:  # enlarge first (nearest: exact copies) ...
            scale = max(-(-size // mask.shape[2]), -(-size // mask.shape[3]))
            mask = F.interpolate(mask, scale_factor=scale, mode="nearest")
        m = F.adaptive_max_pool2d(mask, size)  # ... so shrinking never skips a mask pixel
    return F.max_pool2d(m, 3, stride=1, padding=1)


def sdedit_timesteps(strength: float, train_timesteps: int, steps: int) -> list[int]:
    """The DDIM timesteps of an SDEdit at ``strength`` (fraction of the trajectory, in (0, 1]).

    Starts at ``t0 = min(T - 1, round(strength * T))`` and takes ``n = max(1, ceil(strength * steps))``
    evenly spaced steps (``t_k = round(t0 (n - k) / n)``, duplicates dropped); the last step goes to
    the clean image (alpha-bar 1). ``steps`` is the number of DDIM steps a full trajectory would take.
    """
    if not (math.isfinite(strength) and 0.0 < strength <= 1.0):
        raise ValueError(f"SDEdit strength must be in (0, 1], got {strength!r}")
    if int(steps) < 1 or int(train_timesteps) < 1:
        raise ValueError(f"steps and train_timesteps must be >= 1, got {steps}, {train_timesteps}")
    t0 = min(train_timesteps - 1, int(round(strength * train_timesteps)))
    n = max(1, math.ceil(strength * steps - 1e-9))
    out: list[int] = []
    for k in range(n):
        t = int(round(t0 * (n - k) / n))
        if not out or t < out[-1]:
            out.append(t)
    return out


def forward_noise(x0: Tensor, eps: Tensor, abar: Tensor | float) -> Tensor:
    """``q(x_t | x_0)``: ``sqrt(ab) x0 + sqrt(1 - ab) eps``."""
    a = torch.as_tensor(abar, dtype=x0.dtype, device=x0.device)
    return a.sqrt() * x0 + (1.0 - a).sqrt() * eps


def predict_x0(x_t: Tensor, eps: Tensor, abar: Tensor | float) -> Tensor:
    """The clean-image estimate ``(x_t - sqrt(1 - ab) eps) / sqrt(ab)``."""
    a = torch.as_tensor(abar, dtype=x_t.dtype, device=x_t.device)
    return (x_t - (1.0 - a).sqrt() * eps) / a.sqrt()


def eps_from_x0(x_t: Tensor, x0: Tensor, abar: Tensor | float) -> Tensor:
    """The noise consistent with ``x_t`` and a (modified) ``x0``: ``(x_t - sqrt(ab) x0) / sqrt(1 - ab)``."""
    a = torch.as_tensor(abar, dtype=x_t.dtype, device=x_t.device)
    return (x_t - a.sqrt() * x0) / (1.0 - a).sqrt()


def ddim_step(x0: Tensor, eps: Tensor, abar_prev: Tensor | float) -> Tensor:
    """Deterministic DDIM (eta = 0): ``sqrt(ab_prev) x0 + sqrt(1 - ab_prev) eps``."""
    return forward_noise(x0, eps, abar_prev)


def blend(x: Tensor, target: Tensor, weight: Tensor) -> Tensor:
    """``x + weight * (target - x)`` (weight in [0, 1]; 1 gives ``target``)."""
    return x + weight * (target - x)


def lesion_pull(x0_hat: Tensor, x0: Tensor, mask: Tensor, weight: float) -> Tensor:
    """A gradient step of size ``weight / 2`` on ``||mask ⊙ (x0_hat - x0)||²``."""
    return x0_hat - weight * mask * (x0_hat - x0)


def agreement_step(
    x0_hat: Tensor, loss_fn: Callable[[Tensor], Tensor], step: float, halvings: int = 3
) -> tuple[Tensor, Tensor]:
    """One backtracking step ``x0_hat - s * L * g / rms(g)`` per case, ``L = loss_fn(x0_hat) (B,)``, ``g = dL/dx0_hat``.

    ``s`` starts at ``step`` and is halved (at most ``halvings`` times) until the case's loss
    decreases; a case whose loss never decreases (or whose gradient is zero) is left unchanged.
    Returns the updated estimate and its loss (detached).
    """
    with torch.enable_grad():
        v = x0_hat.detach().requires_grad_(True)
        loss = loss_fn(v)
        (grad,) = torch.autograd.grad(loss.sum(), v)
    loss = loss.detach()
    rms = grad.pow(2).flatten(1).mean(1).sqrt().view(-1, 1, 1, 1)
    direction = torch.where(rms > 0, grad / rms.clamp_min(1e-30), torch.zeros_like(grad))
    best, best_loss = x0_hat, loss
    done = torch.zeros_like(loss, dtype=torch.bool)
    s = float(step)
    for _ in range(halvings + 1):
        candidate = x0_hat - s * loss.view(-1, 1, 1, 1) * direction
        with torch.no_grad():
            c_loss = loss_fn(candidate).detach()
        take = ~done & (c_loss < loss)
        best = torch.where(take.view(-1, 1, 1, 1), candidate, best)
        best_loss = torch.where(take, c_loss, best_loss)
        done |= take
        if bool(done.all()):
            break
        s /= 2.0
    return best, best_loss


@dataclass(frozen=True)
class Constraints:
    """The soft constraints of one SDEdit run (working grid, working units).

    ``known``: the original ``u_x``; ``lesion`` / ``frozen``: ``(B, 1, S, S)`` masks in [0, 1] or
    None; ``bounds``: per-case ``(lo, hi)`` ``(B, 1, 1, 1)`` for ``x0_hat``; ``agreement``: a
    per-case loss on ``x0_hat`` or None.
    """

    known: Tensor
    lesion: Tensor | None = None
    frozen: Tensor | None = None
    lesion_weight: float = 0.0
    reimpose: float = 0.0
    agreement: Callable[[Tensor], Tensor] | None = None
    agreement_step: float = 0.0
    bounds: tuple[Tensor, Tensor] | None = None

    def weight(self) -> Tensor | None:
        """Re-imposition weight ``clip(reimpose * lesion + frozen, 0, 1)`` or None when nothing is re-imposed."""
        w = None
        if self.lesion is not None and self.reimpose > 0:
            w = self.reimpose * self.lesion
        if self.frozen is not None:
            w = self.frozen if w is None else w + self.frozen
        return None if w is None else w.clamp(0.0, 1.0)


def sdedit(
    eps_fn: Callable[[Tensor, int], Tensor],
    start: Tensor,
    noise: Tensor,
    timesteps: Sequence[int],
    abar: Tensor,
    constraints: Constraints,
) -> Tensor:
    """Noise ``start`` to ``timesteps[0]`` and run deterministic DDIM to the clean image under ``constraints``.

    ``eps_fn(x_t, t)`` predicts the noise; ``abar`` is the alpha-bar table (indexed by timestep).
    """
    c = constraints
    w = c.weight()
    one = torch.ones((), dtype=start.dtype, device=start.device)
    x = forward_noise(start, noise, abar[timesteps[0]])
    if w is not None:
        x = blend(x, forward_noise(c.known, noise, abar[timesteps[0]]), w)
    for k, t in enumerate(timesteps):
        a_t = abar[t]
        a_prev = abar[timesteps[k + 1]] if k + 1 < len(timesteps) else one
        x0 = predict_x0(x, eps_fn(x, t), a_t)
        if c.lesion is not None and c.lesion_weight > 0:
            x0 = lesion_pull(x0, c.known, c.lesion, c.lesion_weight)
        if c.agreement is not None and c.agreement_step > 0:
            x0, _ = agreement_step(x0, c.agreement, c.agreement_step)
        if c.bounds is not None:  # last: no step may leave the case's own range (+- margin)
            x0 = torch.maximum(torch.minimum(x0, c.bounds[1]), c.bounds[0])
        x = ddim_step(x0, eps_from_x0(x, x0, a_t), a_prev)
        if w is not None:
            x = blend(x, forward_noise(c.known, noise, a_prev), w)
    return x


def encode_labels(label: Tensor | None, n_labels: int, batch_size: int) -> Tensor:
    """Weak labels as the conditioning vector ``(B, n_labels)`` in {-1, 0, +1}.

    Multi-label ``(B, F)`` in {0, 1, nan}: ``2y - 1`` with nan -> 0 (unknown); class indices
    ``(B,)``: +1 at the class, -1 elsewhere; ``None``: all zeros (unconditional).
    """
    if label is None:
        return torch.zeros(batch_size, n_labels)
    if label.ndim == 2:
        if label.shape[1] != n_labels:
            raise ValueError(f"labels have {label.shape[1]} columns; the diffusion model is conditioned on {n_labels}")
        y = label.float()
        return torch.where(torch.isfinite(y), 2.0 * y - 1.0, torch.zeros_like(y))
    if label.ndim == 1:
        idx = label.long()
        if bool(((idx < 0) | (idx >= n_labels)).any()):
            raise ValueError(f"class labels {idx.tolist()} are outside 0..{n_labels - 1}")
        return 2.0 * F.one_hot(idx, n_labels).float() - 1.0
    raise ValueError(f"labels must be (B,) class indices or (B, F) multi-label, got shape {tuple(label.shape)}")


# ---------------------------------------------------------------------------------------------
# the generic editor
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DiffusionEditParams:
    """``strength``: fraction of the diffusion trajectory (the severity; 0 = identity).
    ``amplitude``: the direction's signed amplitude (unit: the editor's ``amplitude_unit``; 0 for
    plain resampling). ``angle``: orientation of oriented directions (rad, [0, 2 pi)).
    ``noise_seed``: the SDEdit noise realisation."""

    strength: float
    amplitude: float
    angle: float
    noise_seed: int


class DiffusionEditor(Editor[DiffusionEditParams]):
    """Label-conditioned SDEdit with lesion re-imposition and scorer agreement (see the module docstring).

    Options (constructor keywords, recorded in provenance): ``weights`` — a ``.safetensors`` file
    with its ``.json`` config (default: the plugin's cached demo model); ``steps`` — DDIM steps of a
    full trajectory; ``lesion_weight`` (γ in [0, 1]) and ``reimpose`` (r in [0, 1]) — the lesion
    consistency constraint; ``agreement_step`` — the agreement term's step (working units per unit
    of disagreement; 0 disables it); ``scorer`` — ``"task"`` (the plugin's task model), ``"none"`` or a
    :class:`~c3_core.editors.scorer.Scorer`; ``condition`` — ``"label"`` (weak labels) or ``"none"``;
    ``agreement_tolerance`` — when set, :meth:`check` rejects cases whose scorer probabilities moved
    by more than this.

    Subclasses set ``id``, ``modality``, ``domain``, ``summary``, ``lesion_channels``, the domain
    ``lower_bound`` / ``upper_bound``, the direction (``direction``, ``amplitude_unit``,
    ``max_amplitude``, ``signed`` and :meth:`guide`), ``model_config`` / ``fit_defaults`` (what
    ``c3 editor fit`` trains) and implement :meth:`load_default_model`; optionally
    :meth:`frozen_mask` and :meth:`default_scorer`.
    """

    stream_sampling: ClassVar[bool] = True  # _sample draws through c3_core.seeding's helpers only

    intent: ClassVar[Literal["admissible", "interventional"]] = "admissible"
    version: ClassVar[str] = "1"
    spatial: ClassVar[bool] = False
    spatial_dims: ClassVar[tuple[int, ...]] = (2,)
    severity: ClassVar[Severity] = STRENGTH
    params_type: ClassVar[type] = DiffusionEditParams
    expected_effect: ClassVar[str] = "label and lesion mask preserved (low-amplitude appearance change)"
    lesion_channels: ClassVar[tuple[int, ...]] = ()
    direction: ClassVar[str] = "resample"
    amplitude_unit: ClassVar[str] = ""
    max_amplitude: ClassVar[float] = 0.0  # amplitude at the extreme strength
    signed: ClassVar[bool] = True
    lower_bound: ClassVar[float | None] = None
    upper_bound: ClassVar[float | None] = None
    model_config: ClassVar[DiffusionConfig | None] = None  # the architecture `c3 editor fit` trains
    fit_defaults: ClassVar[Mapping[str, Any]] = {}  # FitSettings overrides for this modality

    def __init__(
        self,
        weights: str | None = None,
        steps: int = 20,
        lesion_weight: float = 0.5,
        reimpose: float = 1.0,
        agreement_step: float = 0.2,
        scorer: str | Scorer = "task",
        condition: str = "label",
        agreement_tolerance: float | None = None,
    ) -> None:
        if weights is not None and not Path(weights).is_file():
            raise ValueError(f"{self.id}: weights file {weights} not found")
        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= 1000:
            raise ValueError(f"{self.id}: steps must be an integer in 1..1000, got {steps!r}")
        for name, value in (("lesion_weight", lesion_weight), ("reimpose", reimpose)):
            if not (isinstance(value, int | float) and 0.0 <= float(value) <= 1.0):
                raise ValueError(f"{self.id}: {name} must be in [0, 1], got {value!r}")
        if not (isinstance(agreement_step, int | float) and math.isfinite(agreement_step) and agreement_step >= 0):
            raise ValueError(f"{self.id}: agreement_step must be a finite number >= 0, got {agreement_step!r}")
        if isinstance(scorer, str) and scorer not in ("task", "none"):
            raise ValueError(f"{self.id}: scorer must be 'task', 'none' or a Scorer, got {scorer!r}")
        if not isinstance(scorer, str) and not isinstance(scorer, Scorer):
            raise ValueError(f"{self.id}: scorer must be 'task', 'none' or a Scorer (callable with .names)")
        if condition not in ("label", "none"):
            raise ValueError(f"{self.id}: condition must be 'label' or 'none', got {condition!r}")
        if agreement_tolerance is not None and not (isinstance(agreement_tolerance, int | float) and agreement_tolerance >= 0):
            raise ValueError(f"{self.id}: agreement_tolerance must be a number >= 0 or None, got {agreement_tolerance!r}")
        self.weights = weights
        self.steps = int(steps)
        self.lesion_weight = float(lesion_weight)
        self.reimpose = float(reimpose)
        self.agreement_weight = float(agreement_step)
        self.scorer_option = scorer
        self.condition = condition
        self.agreement_tolerance = None if agreement_tolerance is None else float(agreement_tolerance)
        self._models: dict[str, DiffusionModel] = {}
        self._abar: dict[str, Tensor] = {}
        self._scorer: Scorer | None = None
        self._scorer_loaded = False

    # -- what plugins provide -----------------------------------------------------------------
    @classmethod
    def load_default_model(cls) -> DiffusionModel:
        """The plugin's cached demo denoiser (CPU). The generic editor has none."""
        raise ValueError(f"{cls.id}: no default diffusion model; pass weights=PATH (a .safetensors from `c3 editor fit`)")

    def default_scorer(self) -> Scorer | None:
        """The scorer ``scorer="task"`` means (the plugin's task model); the generic editor has none."""
        return None

    def guide(self, batch: Batch, params: Sequence[DiffusionEditParams]) -> Tensor:
        """The direction's guide image ``x + D(x)`` in the domain (default: ``x``, plain resampling)."""
        return batch.image

    def lesion_mask(self, batch: Batch) -> Tensor | None:
        """``(B, 1, H, W)`` float {0, 1}: the union of ``lesion_channels`` (>= 0.5), or None."""
        if batch.mask is None or not self.lesion_channels:
            return None
        if batch.mask.shape[1] <= max(self.lesion_channels):
            raise ValueError(f"{self.id} reads lesion channel(s) {self.lesion_channels}; the mask has {batch.mask.shape[1]}")
        return (batch.mask[:, list(self.lesion_channels)] >= 0.5).any(1, keepdim=True).to(batch.image.dtype)

    def frozen_mask(self, batch: Batch) -> Tensor | None:
        """``(B, 1, H, W)`` float {0, 1}: pixels the edit must never change (default None)."""
        return None

    def condition_vector(self, batch: Batch, n_labels: int) -> Tensor:
        """The weak-label conditioning ``(B, n_labels)`` (:func:`encode_labels`; zeros for ``condition="none"``)."""
        label = batch.label if self.condition == "label" else None
        return encode_labels(None if label is None else label.cpu(), n_labels, batch.size)

    # -- resources ----------------------------------------------------------------------------
    def model(self, device: torch.device | str) -> DiffusionModel:
        """The denoiser on ``device`` (loaded once per editor instance and device)."""
        def load() -> DiffusionModel:
            base = load_model(self.weights) if self.weights is not None else type(self).load_default_model()
            base.network.eval()
            return base

        return model_on_device(self._models, device, load, lambda m, d: m.to(d))

    def alphas(self, model: DiffusionModel, device: torch.device) -> Tensor:
        key = str(device)
        if key not in self._abar:
            self._abar[key] = alphas_cumprod(model.config).to(device)
        return self._abar[key]

    def scorer(self, device: torch.device | str) -> Scorer | None:
        """The agreement scorer on ``device`` (None when disabled)."""
        if not self._scorer_loaded:
            opt = self.scorer_option
            self._scorer = None if opt == "none" else self.default_scorer() if opt == "task" else opt  # type: ignore[assignment]
            self._scorer_loaded = True
        if self._scorer is not None and hasattr(self._scorer, "to"):
            self._scorer = self._scorer.to(device)  # type: ignore[attr-defined]
        return self._scorer

    # -- params ---------------------------------------------------------------------------
    def _sample(self, info: CaseInfo, generator: Draws, severity: float) -> DiffusionEditParams:
        negative = uniform(generator, 0.0, 1.0) < 0.5
        magnitude = uniform(generator, 0.5, 1.0)
        angle = uniform(generator, 0.0, 2.0 * math.pi)
        sign = -1.0 if (negative and self.signed) else 1.0
        amplitude = sign * magnitude * self.severity.fraction(severity) * self.max_amplitude
        return DiffusionEditParams(float(severity), float(amplitude), float(angle), draw_seed(generator))

    # -- apply ----------------------------------------------------------------------------
    def _apply(self, batch: Batch, params: Sequence[DiffusionEditParams]) -> Batch:
        rows = []
        for i, p in enumerate(params):
            one = batch.select([i])
            rows.append(one.image.clone() if p.strength <= 0.0 else self._edit_one(one, p))
        return batch.replace(image=torch.cat(rows, 0))

    def _clip(self, x: Tensor) -> Tensor:
        if self.lower_bound is not None or self.upper_bound is not None:
            return x.clamp(self.lower_bound, self.upper_bound)
        return x

    def reimposition_weight(self, batch: Batch) -> Tensor | None:
        """Full-resolution ``W = clip(reimpose * lesion + frozen, 0, 1)`` ``(B, 1, H, W)`` or None."""
        lesion, frozen = self.lesion_mask(batch), self.frozen_mask(batch)
        w = None if lesion is None or self.reimpose <= 0 else self.reimpose * lesion
        if frozen is not None:
            w = frozen if w is None else w + frozen
        return None if w is None else w.clamp(0.0, 1.0)

    @torch.no_grad()
    def _edit_one(self, batch: Batch, p: DiffusionEditParams) -> Tensor:
        dev, dt = batch.device, batch.image.dtype
        model = self.model(dev)
        cfg = model.config
        x = batch.image
        if x.shape[1] != cfg.channels:
            raise ValueError(f"{self.id}: the diffusion model takes {cfg.channels} channel(s), the image has {x.shape[1]}")
        guide = self._clip(self.guide(batch, [p]))
        lo, hi = percentile_range(x, cfg.low_percentile, cfg.high_percentile)
        scale = unit_scale(lo, hi).to(dt)
        u_x = to_unit(to_grid(x, cfg.size), lo, hi)
        u_g = to_unit(to_grid(guide, cfg.size), lo, hi)
        lesion, frozen = self.lesion_mask(batch), self.frozen_mask(batch)
        w_full = self.reimposition_weight(batch)

        def compose(u: Tensor) -> Tensor:  # working-grid estimate -> full-resolution domain image
            out = guide + from_grid(u - u_g, x.shape[2:]) * scale
            return out if w_full is None else x + (1.0 - w_full) * (out - x)

        loss_fn = None
        scorer = self.scorer(dev) if self.agreement_weight > 0 else None
        if scorer is not None:
            p_ref = scorer(x).detach()
            loss_fn = lambda u: agreement(scorer(compose(u)), p_ref)  # noqa: E731
        constraints = Constraints(
            known=u_x,
            lesion=None if lesion is None else grid_mask(lesion, cfg.size),
            frozen=None if frozen is None else grid_mask(frozen, cfg.size),
            lesion_weight=self.lesion_weight, reimpose=self.reimpose,
            agreement=loss_fn, agreement_step=self.agreement_weight,
            bounds=(u_x.amin((1, 2, 3), keepdim=True) - X0_MARGIN, u_x.amax((1, 2, 3), keepdim=True) + X0_MARGIN),
        )  # fmt: skip
        cond = self.condition_vector(batch, cfg.n_labels).to(dev, dt)
        noise = torch.randn(u_x.shape, generator=generator_from_seed(p.noise_seed), dtype=dt).to(dev)
        abar = self.alphas(model, dev)

        def eps_fn(x_t: Tensor, t: int) -> Tensor:
            return model.eps(x_t, torch.full((x_t.shape[0],), t, device=dev, dtype=torch.long), cond)

        u_edit = sdedit(eps_fn, u_g, noise, sdedit_timesteps(p.strength, cfg.train_timesteps, self.steps), abar, constraints)
        out = self._clip(compose(u_edit))
        if w_full is not None:
            out = torch.where(w_full >= 1.0, x, out)
        return out.to(dt)

    # -- validity -------------------------------------------------------------------------
    @torch.no_grad()
    def scorer_change(self, original: Batch, counterfactual: Batch) -> Tensor | None:
        """``max_f |p_f(x') - p_f(x)|`` per case from the scorer, or None without one."""
        scorer = self.scorer(original.device)
        if scorer is None:
            return None
        return (scorer(counterfactual.image) - scorer(original.image)).abs().amax(1).cpu()

    def check(self, original: Batch, counterfactual: Batch, params: Sequence[DiffusionEditParams]) -> list[str | None]:
        """With ``agreement_tolerance`` set: reject cases whose scorer probabilities moved by more."""
        if self.agreement_tolerance is None:
            return [None] * original.size
        change = self.scorer_change(original, counterfactual)
        if change is None:
            return [None] * original.size
        names = ", ".join(self._scorer.names) if self._scorer is not None else ""
        return [
            None if v <= self.agreement_tolerance
            else f"{self.id}: scorer probabilities ({names}) moved by {v:.3f} > tolerance {self.agreement_tolerance:g}"
            for v in change.tolist()
        ]

    @classmethod
    def describe(cls) -> dict[str, Any]:
        d = super().describe()
        d.update(direction=cls.direction, amplitude_unit=cls.amplitude_unit, max_amplitude=cls.max_amplitude,
                 lesion_channels=list(cls.lesion_channels))  # fmt: skip
        return d
