"""Training the diffusion editor's denoiser on a cohort, caching the demo model, and ``c3 editor fit``.

Objective: the standard DDPM epsilon loss ``E ||eps_theta(sqrt(ab_t) u + sqrt(1 - ab_t) eps, t, c) - eps||²``
on working-grid images ``u`` normalised per image exactly as the editor does (percentiles to
[-1, 1], :mod:`c3_core.editors.diffusion`), with ``t`` uniform on ``[0, max_strength * T)`` (SDEdit
never starts higher) and the weak-label vector ``c`` zeroed with probability ``label_dropout`` (so
the zero vector is the unconditional model). AdamW with a one-cycle learning-rate schedule.
Weights, timesteps, noise, dropout and shuffling come from one ``torch.Generator`` seeded with
``seed``: the same seed gives the same weights on the same device.

``c3 editor fit`` checkpoints every finished epoch into ``OUT.ckpt/``
(:mod:`c3_core.editors.fit_checkpoint`); Ctrl-C keeps them, ``--resume`` continues from the last
one to the same weights an uninterrupted fit gives, and the folder is removed once ``OUT`` is written.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from c3_core.batch import Batch, collate
from c3_core.editors.diffusion_model import DiffusionConfig, DiffusionModel, alphas_cumprod, build_model
from c3_core.editors.fit_checkpoint import FitState, capture, restore

EXIT_OK, EXIT_USAGE, EXIT_RUN_FAILED, EXIT_INTERRUPTED = 0, 2, 3, 130


@dataclass(frozen=True)
class FitSettings:
    """Optimisation settings: ``epochs`` over the cohort, ``batch_size`` images per step, AdamW ``lr``
    and ``weight_decay``, ``label_dropout`` (probability in [0, 1)), and the ``seed``."""

    epochs: int = 6
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 1e-4
    label_dropout: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        if int(self.epochs) < 1 or int(self.batch_size) < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got {self.epochs}, {self.batch_size}")
        if not 0.0 < float(self.lr) < 1.0:
            raise ValueError(f"lr must be in (0, 1), got {self.lr!r}")
        if not 0.0 <= float(self.label_dropout) < 1.0:
            raise ValueError(f"label_dropout must be in [0, 1), got {self.label_dropout!r}")

    def digest(self) -> str:
        return hashlib.blake2b(json.dumps(asdict(self), sort_keys=True).encode(), digest_size=6).hexdigest()


def normalise_images(images: Tensor, config: DiffusionConfig) -> Tensor:
    """Images ``(N, C, H, W)`` in their domain -> working units on the ``config.size`` grid (as the editor does)."""
    from c3_core.editors.diffusion import percentile_range, to_grid, to_unit

    lo, hi = percentile_range(images, config.low_percentile, config.high_percentile)
    return to_unit(to_grid(images.float(), config.size), lo, hi)


def cohort_tensors(
    dataset: Any,
    config: DiffusionConfig,
    condition: Callable[[Batch], Tensor],
    limit: int | None = None,
    chunk: int = 64,
) -> tuple[Tensor, Tensor]:
    """Working-grid images ``(N, C, S, S)`` and conditioning ``(N, n_labels)`` of a dataset of Samples."""
    n = len(dataset) if limit is None else min(int(limit), len(dataset))
    if n < 1:
        raise ValueError("the training cohort is empty")
    us, cs = [], []
    for start in range(0, n, chunk):
        batch = collate([dataset[i] for i in range(start, min(n, start + chunk))])
        if batch.spatial_dims != 2:
            raise ValueError(f"the diffusion editor is 2-D; exam {batch.exam_ids[0]} has {batch.spatial_dims} spatial axes")
        if batch.image.shape[1] != config.channels:
            raise ValueError(f"exam {batch.exam_ids[0]}: {batch.image.shape[1]} channel(s), the config expects {config.channels}")
        us.append(normalise_images(batch.image, config))
        cs.append(condition(batch).float())
    cond = torch.cat(cs)
    if cond.shape[1] != config.n_labels:
        raise ValueError(f"the condition has {cond.shape[1]} entries, the config expects n_labels={config.n_labels}")
    return torch.cat(us), cond


@torch.enable_grad()  # training may be triggered lazily from inside an editor's no-grad apply
def fit_diffusion(
    u: Tensor,
    cond: Tensor,
    config: DiffusionConfig,
    settings: FitSettings,
    device: str | torch.device = "cpu",
    progress: Callable[[int, float], None] | None = None,
    *,
    checkpoint: Callable[[FitState], None] | None = None,
    resume: FitState | None = None,
) -> tuple[DiffusionModel, list[float]]:
    """Train a denoiser on ``u (N, C, S, S)`` (working units) and ``cond (N, n_labels)``.

    Returns the model (on the CPU, eval mode) and the mean loss of each epoch. After every epoch
    ``checkpoint(state)`` gets the state to continue from, then ``progress(epoch, mean_loss)`` is
    called. ``resume``: a state ``checkpoint`` was given; the fit continues after its epoch and
    ends with the same weights as one that never stopped (same device).
    """
    s = config.size
    if u.ndim != 4 or tuple(u.shape[1:]) != (config.channels, s, s):
        raise ValueError(f"images must be (N, {config.channels}, {s}, {s}), got {tuple(u.shape)}")
    if cond.shape != (u.shape[0], config.n_labels):
        raise ValueError(f"conditioning must be ({u.shape[0]}, {config.n_labels}), got {tuple(cond.shape)}")
    g = torch.Generator().manual_seed(int(settings.seed))
    model = build_model(config, g)
    net = model.network.to(device).train()
    abar = alphas_cumprod(config).to(device)
    t_max = max(1, int(round(config.max_strength * config.train_timesteps)))
    n = u.shape[0]
    per_epoch = [torch.randperm(n, generator=g).split(settings.batch_size) for _ in range(settings.epochs)]
    opt = torch.optim.AdamW(net.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    total = sum(len(e) for e in per_epoch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=settings.lr, total_steps=max(1, total))
    history: list[float] = []
    if resume is not None:
        restore(resume, net, opt, sched, g)
        history = list(resume.history)
    for epoch in range(len(history), settings.epochs):
        chunks = per_epoch[epoch]
        losses = []
        for idx in chunks:
            b = idx.numel()
            t = torch.randint(0, t_max, (b,), generator=g)
            eps = torch.randn((b, *u.shape[1:]), generator=g)
            drop = torch.rand(b, generator=g) < settings.label_dropout
            c = torch.where(drop[:, None], torch.zeros_like(cond[idx]), cond[idx])
            x0, eps, t, c = u[idx].to(device), eps.to(device), t.to(device), c.to(device)
            a = abar[t].view(-1, 1, 1, 1)
            loss = F.mse_loss(net(a.sqrt() * x0 + (1 - a).sqrt() * eps, t, c), eps)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
        history.append(sum(losses) / len(losses))
        if checkpoint is not None:
            checkpoint(capture(epoch + 1, history, net, opt, sched, g))
        if progress is not None:
            progress(epoch, history[-1])
    net.eval()
    return DiffusionModel(config, net.cpu()), history


def cached_default_model(
    name: str,
    config: DiffusionConfig,
    settings: FitSettings,
    dataset: Callable[[], Any],
    condition: Callable[[Batch], Tensor],
) -> DiffusionModel:
    """A plugin's demo denoiser: trained on ``dataset()`` on first use (CPU, deterministic) and
    cached as safetensors under :func:`c3_core.cache.cache_dir` (the name includes both digests)."""
    from safetensors.torch import load_file

    from c3_core.cache import cached_weights
    from c3_core.editors.diffusion_model import model_from_state

    def train() -> dict[str, Tensor]:
        u, c = cohort_tensors(dataset(), config, condition)
        return fit_diffusion(u, c, config, settings)[0].network.state_dict()

    path = cached_weights(f"{name}-{config.digest()}-{settings.digest()}", train)
    return model_from_state(load_file(str(path), device="cpu"), config, source=str(path))


def fit_command(
    editor: str,
    out: str | Path,
    *,
    data: str | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    size: int | None = None,
    seed: int = 0,
    limit: int | None = None,
    device: str = "cpu",
    host: Any = None,
    echo: Callable[[str], None] = print,
    data_options: dict[str, Any] | None = None,
    resume: bool = False,
) -> int:
    """``c3 editor fit``: train the denoiser of diffusion editor ``editor`` on a cohort's train split.

    ``data``: a registered dataset id or a path its modality's loader reads (default: the modality's
    demo cohort). ``out``: the ``.safetensors`` file to write (its ``.json`` config goes beside it);
    an existing file is never overwritten. Unset training options take the editor's defaults.
    Every finished epoch is checkpointed in ``OUT.ckpt/``; after Ctrl-C, ``resume=True`` (with
    the same options) continues from the last one. Returns 0, 2 (bad input; nothing written),
    3 (training failed) or 130 (interrupted; the finished epochs are kept).
    """
    from c3_core.editors import fit_checkpoint as ckpt
    from c3_core.editors.diffusion import DiffusionEditor
    from c3_core.editors.diffusion_model import config_path_for, save_model
    from c3_core.plugins.registry import ContributionError, UnknownContributionError
    from c3_core.resolve import InputError as EvaluationInputError
    from c3_core.resolve import build_dataset, resolve_dataset

    target = Path(out)
    if target.suffix != ".safetensors":
        echo(f"error: --out {target} must be a .safetensors file (its .json config is written beside it)")
        return EXIT_USAGE
    if target.exists() or config_path_for(target).exists():
        echo(f"error: {target} (or its .json) already exists; choose another --out")
        return EXIT_USAGE
    folder = ckpt.checkpoint_dir_for(target)
    last = ckpt.latest(folder)
    if resume and last is None:
        echo(f"error: --resume: no checkpoint in {folder}")
        return EXIT_USAGE
    if not resume and last is not None:
        echo(f"error: {folder} holds an unfinished fit; continue it with --resume (same options) or delete it")
        return EXIT_USAGE
    if host is None:
        from c3_core.plugins.host import PluginHost

        host = PluginHost().load()
    try:
        cls = host.registry("editors").get(editor).load()
        if not (isinstance(cls, type) and issubclass(cls, DiffusionEditor)):
            raise ValueError(f"{editor} is not a diffusion editor")
        if cls.model_config is None:
            raise ValueError(f"{editor} declares no model_config to train")
        config = cls.model_config if size is None else replace(cls.model_config, size=int(size))
        overrides = {k: v for k, v in {"epochs": epochs, "batch_size": batch_size, "lr": lr}.items() if v is not None}
        settings = FitSettings(**{**dict(cls.fit_defaults), **overrides, "seed": int(seed)})
        if limit is not None and int(limit) < 1:
            raise ValueError("--limit must be >= 1")
        contribution, source = resolve_dataset(host, cls.modality, data)
        dataset = build_dataset(contribution, source, "train", data_options)
        ed = cls(scorer="none")
        u, c = cohort_tensors(dataset, config, lambda b: ed.condition_vector(b, config.n_labels), limit=limit)
        fingerprint = json.loads(json.dumps({
            "editor": editor, "data": contribution.id, "source": None if source is None else str(source),
            "data_options": data_options or {}, "cases": int(u.shape[0]), "config": asdict(config), "settings": asdict(settings),
        }, default=str))  # fmt: skip
        start = None
        if last is not None:
            start = ckpt.load(last)
            differs = ckpt.mismatch(start.fingerprint, fingerprint)
            if differs:
                raise ValueError(f"--resume: {last} was made with other options ({differs}); use the same options or delete {folder}")
    except (UnknownContributionError, ContributionError, EvaluationInputError, ValueError, KeyError, FileNotFoundError) as exc:
        echo(f"error: {exc}")
        return EXIT_USAGE
    echo(f"{editor}: fitting on {u.shape[0]} cases of {contribution.id} at {config.size} px on {device} "
         f"({settings.epochs} epochs, batch {settings.batch_size})"
         + ("" if start is None else f", resuming after epoch {start.epoch} from {folder}"))  # fmt: skip

    def keep(state: FitState) -> None:
        state.fingerprint = fingerprint
        ckpt.save(folder, state)

    try:
        model, history = fit_diffusion(u, c, config, settings, device=device, checkpoint=keep, resume=start,
                                       progress=lambda e, loss: echo(f"  epoch {e + 1}/{settings.epochs}: loss {loss:.4f}"))  # fmt: skip
        w, j = save_model(model, target, extra={"editor": editor, "data": contribution.id, "cases": int(u.shape[0]),
                                                "settings": asdict(settings), "loss": history})  # fmt: skip
    except KeyboardInterrupt:
        kept = ckpt.latest(folder)
        done = 0 if kept is None else int(kept.stem.split("-")[1])
        echo(f"interrupted: {done} finished epoch(s) kept in {folder}; continue with the same command and --resume")
        return EXIT_INTERRUPTED
    except (RuntimeError, OSError) as exc:
        echo(f"error: training failed: {exc}" + (f" (finished epochs are kept in {folder}; --resume continues)" if ckpt.latest(folder) else ""))
        return EXIT_RUN_FAILED
    shutil.rmtree(folder, ignore_errors=True)
    echo(f"wrote {w} and {j}")
    return EXIT_OK
