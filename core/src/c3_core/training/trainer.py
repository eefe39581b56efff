"""The training loop of `c3 train`: Eq. 1 with online, gated counterfactuals; DDP; resumable.

One optimiser step:

1. the step's cases (a :class:`~torch.utils.data.DistributedSampler` shard under ``torchrun``);
2. the baseline augmentation (``none`` / ``standard`` / ``randaugment`` / ``augmix``), seeded by
   (seed, epoch, step, rank);
3. with λ > 0, K counterfactuals per case drawn from the neighbourhood reseeded per epoch, and
   the validity gate (operator checks plus a frozen teacher's test);
4. one forward pass over the originals, the AugMix views and the admitted counterfactuals;
5. ``L = L_sup + λ(step) · mean_admitted D(f(x), f(x'))`` (+ AugMix's JSD term), one update.

Every random choice is a function of counters (seed, epoch, step, rank, exam id), so a run
resumed from a checkpoint continues exactly as an uninterrupted one would.
"""

from __future__ import annotations

import csv
import gc
import io
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from c3_core.batch import Batch, collate
from c3_core.evaluation.distributed import ProcessGroup
from c3_core.evaluation.scoring import GateSettings
from c3_core.losses import admitted_mean, distance_for_task
from c3_core.model import ModelBundle
from c3_core.neighbourhood import Neighbourhood
from c3_core.reference_training import supervised_loss
from c3_core.seeding import derive_seed, generator_from_seed
from c3_core.training.checkpoint import load_checkpoint, save_checkpoint
from c3_core.training.dataset import epoch_neighbourhood
from c3_core.training.gating import admitted_pairs
from c3_core.training.schedule import LambdaSchedule, warmup_cosine_lr
from c3_core.training.teacher import inference_teacher

AUGMENTS: tuple[str, ...] = ("none", "standard", "randaugment", "augmix")


@dataclass(frozen=True)
class TrainOptions:
    """Hyper-parameters of one training run (all of them recorded with the weights)."""

    epochs: int = 10
    batch_size: int = 16
    lr: float = 3e-3
    weight_decay: float = 1e-4
    lam: float = 1.0
    lam_shape: str = "constant"
    lam_warmup_epochs: float = 0.0
    augment: str = "standard"
    jsd_weight: float = 12.0
    use_gate: bool = True
    average: str = "pairs"
    detach_reference: bool = False
    seed: int = 0
    amp: bool = False
    checkpoint_every: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.augment not in AUGMENTS:
            raise ValueError(f"--augment must be one of {AUGMENTS}, got {self.augment!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"--lr must be > 0, got {self.lr}")
        if self.lam_warmup_epochs < 0:
            raise ValueError(f"--lam-warmup-epochs must be >= 0, got {self.lam_warmup_epochs}")
        if self.lam_warmup_epochs > 0 and self.lam_shape == "constant":  # a constant schedule has no ramp
            raise ValueError("--lam-warmup-epochs needs --lam-schedule linear or cosine (constant has no warm-up)")
        LambdaSchedule(self.lam, self.lam_shape, 0)  # type: ignore[arg-type]  # validates lam and shape


@dataclass
class EpochRecord:
    """One row of ``history.csv`` (means over the epoch's steps on this process)."""

    epoch: int
    steps: int
    loss: float
    supervised: float
    consistency: float
    jsd: float
    lam: float
    lr: float
    admitted: float | None  # share of drawn counterfactuals the gate admitted; None when none drawn
    seconds: float


@dataclass
class TrainState:
    """Counters a checkpoint restores: the next step to run and the history so far."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    partial: dict[str, float] = field(default_factory=dict)  # running sums of the unfinished epoch


class Interrupted(Exception):
    """Training stopped by the user; the checkpoint holds every completed step."""


def _augment_fn(name: str) -> Callable[..., Batch] | None:
    if name in ("none", "augmix"):
        return None
    from c3_core.training import baselines

    return baselines.standard_augment if name == "standard" else baselines.randaugment


def _batches(sampler: DistributedSampler, batch_size: int) -> list[list[int]]:
    idx = list(iter(sampler))
    return [idx[i : i + batch_size] for i in range(0, len(idx), batch_size)]


def history_csv(history: list[dict[str, Any]]) -> str:
    """``history.csv`` text: one row per finished epoch."""
    buf = io.StringIO()
    fields = [f for f in EpochRecord.__dataclass_fields__]
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for row in history:
        w.writerow({k: row[k] for k in fields})
    return buf.getvalue()


class Trainer:
    """Trains ``bundle.network`` in place on ``dataset`` with the consistency objective.

    Args:
        bundle: the model (its ``network`` is updated; ``prepare`` maps images to its input).
        dataset: a dataset of :class:`~c3_core.batch.Sample` (the training split).
        neighbourhood: N(x); required when ``options.lam > 0``.
        options: hyper-parameters.
        teacher: frozen model of the validity gate's learned test (None: operator checks only).
        gate: thresholds (δ, τ) of the gate.
        group: this process's place under ``torchrun`` (one process by default).
        checkpoint_dir: where checkpoints go (rank 0 writes); None: no checkpoints.
        echo: one line per epoch (rank 0).
        on_step: called after every optimiser step with the global step (tests use it to
            simulate an interruption).
        workers: DataLoader worker processes.
        checkpoint_meta: extra JSON stored in every checkpoint (the CLI stores its request).
    """

    def __init__(
        self,
        bundle: ModelBundle,
        dataset: Dataset,
        neighbourhood: Neighbourhood | None,
        options: TrainOptions,
        *,
        teacher: ModelBundle | None = None,
        gate: GateSettings | None = None,
        group: ProcessGroup | None = None,
        checkpoint_dir: Path | None = None,
        echo: Callable[[str], None] = lambda m: None,
        on_step: Callable[[int], None] | None = None,
        workers: int = 0,
        checkpoint_meta: dict[str, Any] | None = None,
    ) -> None:
        if options.lam > 0 and neighbourhood is None:
            raise ValueError("lambda > 0 needs a neighbourhood")
        self.bundle, self.dataset, self.nb, self.opt = bundle, dataset, neighbourhood, options
        self.teacher = teacher
        self.gate = (gate or GateSettings()) if options.use_gate else None
        self.group = group or ProcessGroup(0, 1, "cpu")
        self.device = torch.device(self.group.device)
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_meta = dict(checkpoint_meta or {})
        self.echo, self.on_step, self.workers = echo, on_step, workers
        self.state = TrainState()
        self.supervised = supervised_loss(bundle.task)
        self.distance = distance_for_task(bundle.task, reduction="none", detach_reference=options.detach_reference)
        self.sampler = DistributedSampler(
            dataset, num_replicas=self.group.world, rank=self.group.rank, shuffle=True, seed=options.seed, drop_last=False
        )
        self.steps_per_epoch = math.ceil(self.sampler.num_samples / options.batch_size)
        self.total_steps = self.steps_per_epoch * options.epochs
        self.lam = LambdaSchedule(
            options.lam, options.lam_shape,  # type: ignore[arg-type]
            round(options.lam_warmup_epochs * self.steps_per_epoch),
        )
        # AugMix's JSD term ramps in over the same warm-up (a factor 0 -> 1; constant 1 without one)
        self.jsd_ramp = LambdaSchedule(1.0, options.lam_shape, round(options.lam_warmup_epochs * self.steps_per_epoch))  # type: ignore[arg-type]
        net = bundle.network.to(self.device)
        if self.group.world > 1 and self.device.type == "cuda":
            net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
            bundle.network = net
        self.network = net
        self._ddp: nn.Module | None = None  # the DistributedDataParallel wrapper while steps run (self.model)
        self.optimizer = torch.optim.AdamW(net.parameters(), lr=options.lr, weight_decay=options.weight_decay)
        if teacher is not None:
            teacher.network.to(self.device).eval()
            for p in teacher.network.parameters():
                p.requires_grad_(False)
            self.teacher = inference_teacher(teacher)  # batch norms folded, channels-last (checked)

    @property
    def model(self) -> nn.Module:
        """The network the steps run: with several processes, wrapped in DistributedDataParallel
        (made on the first step after construction or :meth:`release`, on every rank at once)."""
        if self.group.world == 1:
            return self.network
        if self._ddp is None:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self._ddp = DistributedDataParallel(self.network, device_ids=ids)
        return self._ddp

    def release(self) -> None:
        """Drop the DistributedDataParallel wrapper (the next step makes a new one). Its reducer
        holds the process group: a wrapper that outlives the group is destroyed at interpreter
        exit, where gloo can abort the process ("terminate called without an active exception")
        after every step succeeded. :meth:`fit` releases it when it returns or raises."""
        if self._ddp is not None:
            self._ddp = None
            gc.collect()  # DDP leaves reference cycles that keep the group alive: free them now, not at exit

    # -- checkpoints ------------------------------------------------------------------------
    def resume(self, folder: Path) -> None:
        """Restore weights, optimiser and counters from a checkpoint folder."""
        meta = load_checkpoint(folder, self.network, self.optimizer)
        s = meta["state"]
        self.state = TrainState(
            s["epoch"], s["step_in_epoch"], s["global_step"], list(meta.get("history", [])), dict(s.get("partial", {}))
        )

    def _save(self) -> None:
        if self.checkpoint_dir is None or not self.group.leader:
            return
        s = self.state
        meta = {
            "state": {"epoch": s.epoch, "step_in_epoch": s.step_in_epoch, "global_step": s.global_step, "partial": s.partial},
            "history": s.history,
            "options": asdict(self.opt),
            **self.checkpoint_meta,
        }
        save_checkpoint(self.checkpoint_dir, self.network, self.optimizer, meta)

    # -- one step ---------------------------------------------------------------------------
    def _forward(self, images: Tensor) -> Tensor:
        amp = self.opt.amp and self.device.type == "cuda"
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=amp):
            out = self.model(self.bundle.prepare(images))
        return out.float()

    def step(self, batch: Batch, epoch: int, step_in_epoch: int) -> dict[str, float]:
        """One optimiser step on ``batch`` (already on the device); returns its loss parts."""
        o = self.opt
        g = generator_from_seed(derive_seed(o.seed, "train-augment", epoch, step_in_epoch, self.group.rank), self.device)
        aug = _augment_fn(o.augment)
        if aug is not None:
            batch = aug(batch, g)
        b = batch.size
        parts = [batch.image]
        if o.augment == "augmix":
            from c3_core.training.baselines import augmix

            parts += [augmix(batch, g).image, augmix(batch, g).image]
        lam = self.lam(self.state.global_step)
        cf_images, case_index, n_admitted, n_cf = None, None, 0, 0
        if o.lam > 0 and self.nb is not None:
            nb = epoch_neighbourhood(self.nb, epoch)
            # a gate's teacher forwards originals and counterfactuals as drawn, in one tensor
            stacked, cf, plans, rejections = nb.draw_beside(batch, stack=self.teacher is not None and self.gate is not None)
            admitted, _ = admitted_pairs(
                self.bundle.task, batch, cf, plans, rejections,
                gate=self.gate, teacher=self.teacher, class_names=self.bundle.class_names, stacked=stacked,
            )
            flat = admitted.flatten().nonzero().squeeze(1)
            n_admitted, n_cf = int(flat.numel()), admitted.numel()
            case_index = (flat // nb.k).to(self.device)
            cf_images = cf.image[flat.to(cf.image.device)]
            parts.append(cf_images)
        logits = self._forward(torch.cat(parts, 0))
        out_ref = logits[:b]
        sup = self.supervised(out_ref, batch)
        total = sup
        jsd = torch.zeros((), device=self.device)
        if o.augment == "augmix":
            from c3_core.training.baselines import jensen_shannon_consistency

            jsd = jensen_shannon_consistency(out_ref, logits[b : 2 * b], logits[2 * b : 3 * b], self.bundle.task)
            total = total + o.jsd_weight * self.jsd_ramp(self.state.global_step) * jsd
        cons = torch.zeros((), device=self.device)
        if cf_images is not None:
            out_cf = logits[len(logits) - n_admitted :] if n_admitted else logits[:0]
            d = self.distance(out_ref[case_index], out_cf)
            weight = torch.ones_like(d)
            cons = admitted_mean(d, weight, case_index, b, o.average)  # type: ignore[arg-type]
            total = total + lam * cons
        lr = warmup_cosine_lr(self.state.global_step, self.total_steps, o.lr)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer.step()
        return {
            "loss": float(total.detach()), "supervised": float(sup.detach()), "consistency": float(cons.detach()),
            "jsd": float(jsd.detach()), "lam": lam, "lr": lr,
            "admitted": n_admitted / n_cf if n_cf else float("nan"),
        }

    # -- the loop ---------------------------------------------------------------------------
    def fit(self) -> list[dict[str, Any]]:
        """Run the remaining epochs; returns the history. Raises :class:`Interrupted` after saving
        a checkpoint when the user interrupts (Ctrl-C / SIGINT)."""
        o = self.opt
        try:
            while self.state.epoch < o.epochs:
                self._epoch()
        except KeyboardInterrupt:
            self._save()
            raise Interrupted(f"stopped at step {self.state.global_step}") from None
        finally:
            self.release()
        return self.state.history

    def _epoch(self) -> None:
        o, s = self.opt, self.state
        self.sampler.set_epoch(s.epoch)
        batches = _batches(self.sampler, o.batch_size)[s.step_in_epoch :]
        # the loader's own seed (its workers' seeds) from an explicit generator: made from the
        # global RNG, it would shift the dropout masks of a resumed epoch's next step
        loader = DataLoader(self.dataset, batch_sampler=batches, collate_fn=collate, num_workers=self.workers,
                            generator=generator_from_seed(derive_seed(o.seed, "train-loader", s.epoch, self.group.rank)))
        self.network.train()
        t0 = time.perf_counter()
        keys = ("loss", "supervised", "consistency", "jsd", "admitted", "n", "n_admitted", "seconds")
        sums = {k: float(s.partial.get(k, 0.0)) for k in keys}
        last: dict[str, float] = {}
        for batch in loader:
            last = self.step(batch.to(self.device), s.epoch, s.step_in_epoch)
            for key in ("loss", "supervised", "consistency", "jsd"):
                sums[key] += last[key]
            if not math.isnan(last["admitted"]):
                sums["admitted"] += last["admitted"]
                sums["n_admitted"] += 1
            sums["n"] += 1
            s.step_in_epoch += 1
            s.global_step += 1
            s.partial = {**sums, "seconds": sums["seconds"] + time.perf_counter() - t0}
            if o.checkpoint_every and s.global_step % o.checkpoint_every == 0:
                self._save()
            if self.on_step is not None:
                self.on_step(s.global_step)
        n = max(int(sums["n"]), 1)
        record = EpochRecord(
            epoch=s.epoch + 1, steps=int(sums["n"]),
            loss=sums["loss"] / n, supervised=sums["supervised"] / n,
            consistency=sums["consistency"] / n, jsd=sums["jsd"] / n,
            lam=last.get("lam", self.lam(s.global_step)), lr=last.get("lr", 0.0),
            admitted=sums["admitted"] / sums["n_admitted"] if sums["n_admitted"] else None,
            seconds=round(sums["seconds"] + time.perf_counter() - t0, 3),
        )
        s.history.append(asdict(record))
        s.epoch += 1
        s.step_in_epoch = 0
        s.partial = {}
        self.network.eval()
        self._save()
        self.echo(
            f"epoch {record.epoch}/{o.epochs}: loss {record.loss:.4f} (sup {record.supervised:.4f}, "
            f"cons {record.consistency:.4f} x λ {record.lam:g}"
            + (f", jsd {record.jsd:.4f}" if o.augment == "augmix" else "")
            + (f"), admitted {record.admitted:.0%}" if record.admitted is not None else ")")
            + f", {record.seconds:.1f} s"
        )
