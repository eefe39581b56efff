"""Staged, checkpointable training of the structure editors (2-D Seg-CFT and the 3-D volume editor).

A fit is a list of stages run in order — segmentor, generator, then counterfactual fine-tuning of
the generator's decoder (and, for a measurement, a second segmentor, a regressor, a
regressor-guided fine-tuning). Each stage is built when it starts (``build(done)`` sees the
networks of the finished stages), trains ``epochs`` epochs of AdamW with a one-cycle schedule, and
its epochs count in one global epoch number. After every epoch ``checkpoint(state)`` receives a
:class:`~c3_core.editors.fit_checkpoint.FitState` whose network holds every finished stage's
weights and the current one's (prefixed ``<stage>.``) plus the current optimiser, scheduler and
the generator's state; ``resume`` continues from such a state to the same bytes (same device).

The losses are dimension-generic (images ``(N, C, *spatial)``): the segmentor's BCE + soft Dice,
the conditional VAE's MSE + beta KL, the regressor's scaled MSE and the Seg-CFT objective
``mean |A(u') - a'| / a' + closeness * mean |u' - u| outside R + reconstruction * MSE(decode(z, c), u)``
(see :mod:`c3_core.editors.structure`; with ``TuneSettings.target == "shift"``, what the 2-D and
3-D editors use, ``a'`` moves the soft size by ``ratio - 1`` times the segmentor's hard reading
instead).
Every random draw comes from one ``torch.Generator``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from c3_core.editors.fit_checkpoint import FitState
from c3_core.editors.structure_kernels import SegmentorMeasure, relative_area_error, shifted_target
from c3_core.editors.volume_structure_kernels import dilate

Measure = Callable[[Tensor], Tensor]  # images -> (B, S) size fractions


@dataclass
class Stage:
    """One training stage: ``net`` (what is saved), the ``params`` it optimises, ``epochs``,
    ``batches(g)`` (one epoch's steps, drawn from ``g``) and ``loss(step)``."""

    net: nn.Module
    params: list[nn.Parameter]
    epochs: int
    batches: Callable[[torch.Generator], list[Any]]
    loss: Callable[[Any], Tensor]
    lr: float
    steps_per_epoch: int


StageBuilder = Callable[[dict[str, nn.Module]], Stage]


def freeze(net: nn.Module) -> nn.Module:
    """``net`` in eval mode with gradients off."""
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def _state(nets: dict[str, nn.Module]) -> dict[str, Tensor]:
    return {f"{name}.{k}": v.detach().cpu().clone() for name, net in nets.items() for k, v in net.state_dict().items()}


def _load(net: nn.Module, name: str, flat: dict[str, Tensor]) -> None:
    prefix = f"{name}."
    net.load_state_dict({k[len(prefix):]: v for k, v in flat.items() if k.startswith(prefix)})


@torch.enable_grad()
def run_stages(
    stages: Sequence[tuple[str, StageBuilder]],
    generator: torch.Generator,
    *,
    checkpoint: Callable[[FitState], None] | None = None,
    resume: FitState | None = None,
    progress: Callable[[str, int, float], None] | None = None,
) -> tuple[dict[str, nn.Module], list[float]]:
    """Run ``stages`` (name, builder) in order; returns the frozen networks by name and the mean
    loss of every epoch. ``progress(stage, epoch, loss)`` after each epoch (global epoch number)."""
    done: dict[str, nn.Module] = {}
    history: list[float] = [] if resume is None else list(resume.history)
    start = 0 if resume is None else int(resume.epoch)
    epoch0 = 0
    for name, build in stages:
        if resume is not None and epoch0 == start:
            generator.set_state(resume.rng)  # the stage starts exactly where the fit stopped
        stage = build(done)
        total_after = epoch0 + stage.epochs
        opt = torch.optim.AdamW(stage.params, lr=stage.lr, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=stage.lr, total_steps=max(1, stage.epochs * stage.steps_per_epoch))
        first = 0
        if resume is not None and epoch0 < start:
            _load(stage.net, name, resume.network)
            if total_after <= start:  # finished before the interruption
                done[name] = freeze(stage.net)
                epoch0 = total_after
                continue
            opt.load_state_dict(resume.optimizer)
            sched.load_state_dict(resume.scheduler)
            generator.set_state(resume.rng)
            first = start - epoch0
        stage.net.train()
        for e in range(first, stage.epochs):
            steps = stage.batches(generator)
            losses = []
            for step in steps:
                loss = stage.loss(step)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                losses.append(float(loss.detach()))
            history.append(sum(losses) / max(1, len(losses)))
            if checkpoint is not None:
                checkpoint(FitState(
                    epoch=epoch0 + e + 1, history=list(history), network=_state({**done, name: stage.net}),
                    optimizer=opt.state_dict(), scheduler=sched.state_dict(), rng=generator.get_state().clone(),
                ))  # fmt: skip
            if progress is not None:
                progress(name, epoch0 + e + 1, history[-1])
        done[name] = freeze(stage.net)
        epoch0 = total_after
    return done, history


# ---------------------------------------------------------------------------------------------
# stage builders (dimension-generic)
# ---------------------------------------------------------------------------------------------
def _perm_batches(n: int, batch_size: int) -> Callable[[torch.Generator], list[Tensor]]:
    return lambda g: list(torch.randperm(n, generator=g).split(batch_size))


def _steps(n: int, batch_size: int) -> int:
    return -(-n // batch_size)


def lesion_patches(
    u: Tensor, masks: Tensor, idx: Tensor, patch: Sequence[int], positive: float, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Crops of ``patch`` voxels from cases ``idx``: with probability ``positive`` centred on a
    random structure voxel of the case (when it has one), else placed uniformly; all draws from
    ``generator``. Returns ``(images, masks)`` crops."""
    xs, ys = [], []
    sizes = u.shape[2:]
    for i in idx.tolist():
        pos = masks[i].amax(0).nonzero()
        if len(pos) and float(torch.rand((), generator=generator)) < positive:
            centre = pos[int(torch.randint(0, len(pos), (), generator=generator))].tolist()
            start = [min(max(0, c - p // 2), n - p) for c, p, n in zip(centre, patch, sizes)]
        else:
            start = [int(torch.randint(0, n - p + 1, (), generator=generator)) for p, n in zip(patch, sizes)]
        box = tuple(slice(a, a + p) for a, p in zip(start, patch))
        xs.append(u[(i, slice(None), *box)])
        ys.append(masks[(i, slice(None), *box)])
    return torch.stack(xs), torch.stack(ys)


def segmentor_stage(
    make: Callable[[], nn.Module], init: Callable[[nn.Module, torch.Generator], None],
    u: Tensor, masks: Tensor, epochs: int, batch_size: int, lr: float, generator: torch.Generator,
    patch: Sequence[int] | None = None, positive: float = 0.7,
) -> Stage:
    """Segmentor on binary ``masks (N, S, *spatial)``: BCE + soft Dice per structure. ``patch``:
    train on crops of that size (see :func:`lesion_patches`) — far cheaper for small structures in
    volumes; the network is fully convolutional, so it then segments whole volumes."""
    seg = make().to(u.device)
    init(seg, generator)
    sp = tuple(range(2, u.ndim))
    if patch is not None and (len(patch) != len(sp) or any(p > n for p, n in zip(patch, u.shape[2:]))):
        raise ValueError(f"patch {tuple(patch)} does not fit the images {tuple(u.shape[2:])}")

    def loss(idx: Tensor) -> Tensor:
        if patch is None:
            i = idx.to(u.device)
            x, y = u[i], masks[i]
        else:
            x, y = lesion_patches(u, masks, idx, patch, positive, generator)
        logits = seg(x)
        p = torch.sigmoid(logits)
        dims = (0, *sp)
        dice = 1 - (2 * (p * y).sum(dims) + 1) / (p.sum(dims) + y.sum(dims) + 1)
        return F.binary_cross_entropy_with_logits(logits, y) + dice.mean()

    n = u.shape[0]
    return Stage(seg, list(seg.parameters()), epochs, _perm_batches(n, batch_size), loss, lr, _steps(n, batch_size))


def generator_stage(
    make: Callable[[], nn.Module], init: Callable[[nn.Module, torch.Generator], None],
    u: Tensor, cond: Tensor, beta: float, epochs: int, batch_size: int, lr: float, generator: torch.Generator,
) -> Stage:
    """Conditional VAE on ``u`` given standardised conditions ``cond (N, S)``: MSE + beta KL."""
    gen = make().to(u.device)
    init(gen, generator)

    def loss(idx: Tensor) -> Tensor:
        i = idx.to(u.device)
        x, c = u[i], cond[i]
        mu, logvar = gen.posterior(x)
        eps = torch.randn(mu.shape, generator=generator).to(mu.device)
        z = mu + torch.exp(0.5 * logvar) * eps
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).mean()
        return F.mse_loss(gen.decode(z, c), x) + beta * kl

    n = u.shape[0]
    return Stage(gen, list(gen.parameters()), epochs, _perm_batches(n, batch_size), loss, lr, _steps(n, batch_size))


def regressor_stage(
    make: Callable[[], nn.Module], init: Callable[[nn.Module, torch.Generator], None],
    u: Tensor, frac: Tensor, mean: Tensor, std: Tensor, epochs: int, batch_size: int, lr: float, generator: torch.Generator,
) -> Stage:
    """Size regressor on the standardised fractions ``(frac - mean) / std`` (MSE); read it with
    :func:`regressor_measure` and the same ``mean`` and ``std``."""
    reg = make().to(u.device)
    init(reg, generator)
    target = (frac - mean) / std

    def loss(idx: Tensor) -> Tensor:
        i = idx.to(u.device)
        return F.mse_loss(reg(u[i]), target[i])

    n = u.shape[0]
    return Stage(reg, list(reg.parameters()), epochs, _perm_batches(n, batch_size), loss, lr, _steps(n, batch_size))


@dataclass(frozen=True)
class TuneSettings:
    """Counterfactual fine-tuning: ``steps`` AdamW steps in ``epochs`` checkpointed chunks, minibatches
    of ``batch_size``; ratios uniform in ``[ratio_low, ratio_high]``; ``closeness`` (lambda),
    ``reconstruction`` (rho), ``margin`` (dilation of the intervened structure in working-grid voxels);
    ``target``: ``"scale"`` (``ratio`` times the measure's soft size; the default, the first
    version of both editors) or ``"shift"`` (the soft size moves by ``ratio - 1`` times the
    measure's ``reading``, see :func:`~c3_core.editors.structure_kernels.shifted_target`; the 2-D
    area editors and ``mri.lesion_volume``); ``sharpness``: the guiding segmentor's soft size is
    ``mean sigmoid(sharpness * logit)`` (:func:`segmentor_measure`; read by the 3-D fit — the 2-D
    fit takes it from its ``FineTuneConfig``)."""

    steps: int = 120
    epochs: int = 4
    batch_size: int = 8
    lr: float = 1e-3
    closeness: float = 1.0
    reconstruction: float = 1.0
    ratio_low: float = 0.7
    ratio_high: float = 1.3
    margin: int = 2
    target: str = "scale"
    sharpness: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 < self.ratio_low <= self.ratio_high:
            raise ValueError(f"need 0 < ratio_low <= ratio_high, got {self.ratio_low}, {self.ratio_high}")
        if self.target not in ("scale", "shift"):
            raise ValueError(f"target must be 'scale' or 'shift', got {self.target!r}")
        if not 0.0 < float(self.sharpness) < float("inf"):
            raise ValueError(f"sharpness must be a finite number > 0, got {self.sharpness!r}")
        if self.steps < 1 or self.epochs < 1 or self.batch_size < 1 or self.margin < 0:
            raise ValueError("steps, epochs and batch_size must be >= 1 and margin >= 0")
        if self.closeness < 0 or self.reconstruction < 0:
            raise ValueError("closeness and reconstruction weights must be >= 0")


def _intervene(frac: Tensor, structure: Tensor, ratio: Tensor) -> Tensor:
    scale = torch.ones_like(frac)
    scale[torch.arange(frac.shape[0], device=frac.device), structure] = ratio.to(frac.dtype)
    return frac * scale


def fine_tune_stage(
    gen: nn.Module, measure: Measure, u: Tensor, frac: Tensor, masks: Tensor,
    mean: Tensor, std: Tensor, cfg: TuneSettings, generator: torch.Generator,
) -> Stage:
    """Seg-CFT (or regressor-guided, by ``measure``) fine-tuning of a copy of ``gen``'s decoder.

    Per step and case: one structure ``s`` and a ratio ``r``; the target is the measure of the
    original with entry ``s`` times ``r``; the closeness region is the intervened structure's mask
    dilated by ``margin`` voxels."""
    tuned = copy.deepcopy(gen).to(u.device)
    for p in tuned.parameters():
        p.requires_grad_(False)
    params = tuned.decoder_parameters()
    for p in params:
        p.requires_grad_(True)
    n, k = u.shape[0], frac.shape[1]
    with torch.no_grad():
        z_all = torch.cat([tuned.abduct(chunk) for chunk in u.split(16)])
        a_all = torch.cat([measure(chunk) for chunk in u.split(16)])
        reading = getattr(measure, "reading", None)
        h_all = a_all if reading is None or cfg.target == "scale" else torch.cat([reading(chunk) for chunk in u.split(16)])
    c_all = (frac - mean) / std
    per_epoch = -(-cfg.steps // cfg.epochs)
    b = min(cfg.batch_size, n)

    def batches(g: torch.Generator) -> list[tuple[Tensor, Tensor, Tensor]]:
        out = []
        for _ in range(per_epoch):
            idx = torch.randint(0, n, (b,), generator=g)
            s = torch.randint(0, k, idx.shape, generator=g)
            r = cfg.ratio_low + (cfg.ratio_high - cfg.ratio_low) * torch.rand(idx.shape, generator=g, dtype=torch.float64)
            out.append((idx, s, r))
        return out

    def loss(step: tuple[Tensor, Tensor, Tensor]) -> Tensor:
        idx, s, r = (t.to(u.device) for t in step)
        x, z, c = u[idx], z_all[idx], c_all[idx]
        c_tgt = (_intervene(frac[idx], s, r) - mean) / std
        recon = tuned.decode(z, c)
        u_cf = x + (tuned.decode(z, c_tgt) - recon)
        region = dilate(masks[idx, s].unsqueeze(1), cfg.margin)
        if cfg.target == "shift":
            target, scale = shifted_target(a_all[idx], h_all[idx], s, r)
        else:
            target, scale = _intervene(a_all[idx], s, r), None
        rel = relative_area_error(measure(u_cf), target, scale).mean()
        outside = ((u_cf - x).abs() * (1.0 - region)).flatten(1).mean(1).mean()
        return rel + cfg.closeness * outside + cfg.reconstruction * F.mse_loss(recon, x)

    return Stage(tuned, params, cfg.epochs, batches, loss, cfg.lr, per_epoch)


def segmentor_measure(seg: nn.Module, sharpness: float = 1.0) -> SegmentorMeasure:
    """The Seg-CFT measure: soft size fractions (mean ``sigmoid(sharpness * logit)``) of a frozen
    segmentor, with its hard ``reading`` (the fraction of voxels with logit > 0)."""
    return SegmentorMeasure(freeze(seg), sharpness)


def regressor_measure(reg: nn.Module, mean: Tensor, std: Tensor) -> Measure:
    """The baseline measure: size fractions predicted by a frozen regressor (trained on fractions
    standardised with ``mean`` and ``std``, see :func:`regressor_stage`)."""
    freeze(reg)
    return lambda v: reg(v) * std + mean
