"""The fitted 3-D structure-volume model: a Seg-CFT-tuned conditional VAE, its frozen segmentor,
the volume-fraction standardisation and the size floor; its stages, and safetensors I/O.

A weights file holds the flat state (``gen.*``, ``seg.*``, ``frac.mean``, ``frac.std``,
``meta.arch``) and, in its safetensors metadata, the configuration, structure names and the size
floor as JSON, so a file alone rebuilds the model (the architecture vector is checked).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from c3_core.editors.structure_stages import (
    StageBuilder,
    TuneSettings,
    fine_tune_stage,
    freeze,
    generator_stage,
    segmentor_measure,
    segmentor_stage,
)
from c3_core.editors.volume_structure_kernels import hard_voxels
from c3_core.editors.volume_structure_nets import (
    VolumeCVAE,
    VolumeSegmentor,
    VolumeStructureConfig,
    init_parameters3d,
    init_segmentor3d,
)

FORMAT = "c3-volume-structure-model"


def _quiet(factory: Any) -> Any:
    with torch.random.fork_rng(devices=[]):
        return factory()


@dataclass
class VolumeStructureModel:
    """``generator`` (tuned), ``segmentor`` (frozen guide), ``frac_mean``/``frac_std`` ``(S,)`` and
    ``min_volume_ml``: lesions below it were dropped from the training masks (the size floor)."""

    config: VolumeStructureConfig
    structures: tuple[str, ...]
    generator: VolumeCVAE
    segmentor: VolumeSegmentor
    frac_mean: Tensor
    frac_std: Tensor
    min_volume_ml: float = 0.0

    def index(self, name: str) -> int:
        if name not in self.structures:
            raise KeyError(f"unknown structure {name!r} (known: {', '.join(self.structures)})")
        return self.structures.index(name)

    @torch.no_grad()
    def segment_logits(self, u_small: Tensor) -> Tensor:
        """Segmentor logits, one case at a time (so a case's result never depends on its batch)."""
        return torch.cat([self.segmentor(x) for x in u_small.split(1)])

    @torch.no_grad()
    def edit_delta(self, u_small: Tensor, structure: int, ratio: Tensor) -> tuple[Tensor, Tensor]:
        """Working-grid change ``decode(z, c') - decode(z, c)`` and the original's segmentor logits.

        ``c`` is the segmentor's hard volume fraction of ``u_small``; ``c'`` has entry ``structure``
        times ``ratio (B,)`` (an empty structure stays empty: the change is exactly 0)."""
        logits = self.segment_logits(u_small)
        frac = hard_voxels(logits).to(u_small.dtype) / float(logits[0, 0].numel())
        scale = torch.ones_like(frac)
        scale[:, structure] = ratio.to(frac.dtype)
        c_src = (frac - self.frac_mean) / self.frac_std
        c_tgt = (frac * scale - self.frac_mean) / self.frac_std
        deltas = []
        for i, x in enumerate(u_small.split(1)):  # one case at a time: batch-invariant bytes
            z = self.generator.abduct(x)
            deltas.append(self.generator.decode(z, c_tgt[i : i + 1]) - self.generator.decode(z, c_src[i : i + 1]))
        return torch.cat(deltas), logits

    def to(self, device: torch.device | str) -> VolumeStructureModel:
        gen = _quiet(lambda: VolumeCVAE(self.config))
        gen.load_state_dict(self.generator.state_dict())
        seg = _quiet(lambda: VolumeSegmentor(self.config))
        seg.load_state_dict(self.segmentor.state_dict())
        return VolumeStructureModel(
            self.config, self.structures, freeze(gen.to(device)), freeze(seg.to(device)),
            self.frac_mean.to(device), self.frac_std.to(device), self.min_volume_ml,
        )  # fmt: skip

    def state_dict(self) -> dict[str, Tensor]:
        out = {f"gen.{k}": v for k, v in self.generator.state_dict().items()}
        out.update({f"seg.{k}": v for k, v in self.segmentor.state_dict().items()})
        out.update({"frac.mean": self.frac_mean, "frac.std": self.frac_std, "meta.arch": self.config.arch_vector()})
        return {k: v.detach().cpu().contiguous() for k, v in out.items()}

    def metadata(self, extra: Mapping[str, Any] | None = None) -> dict[str, str]:
        meta = {"format": FORMAT, "config": json.dumps(self.config.to_json()), "structures": json.dumps(list(self.structures)),
                "min_volume_ml": repr(float(self.min_volume_ml))}  # fmt: skip
        if extra:
            meta["fit"] = json.dumps(dict(extra), default=str)
        return meta

    @classmethod
    def from_state_dict(
        cls, state: Mapping[str, Tensor], config: VolumeStructureConfig, structures: Sequence[str],
        min_volume_ml: float = 0.0, source: str = "<state>",
    ) -> VolumeStructureModel:
        """Rebuild from :meth:`state_dict` output; ValueError naming ``source`` on a mismatch."""
        for key in ("meta.arch", "frac.mean", "frac.std"):
            if key not in state:
                raise ValueError(f"{source}: not a volume structure model (missing {key!r})")
        if not torch.equal(state["meta.arch"].cpu(), config.arch_vector()):
            raise ValueError(f"{source}: architecture {state['meta.arch'].tolist()} != config {config.arch_vector().tolist()}")
        if len(structures) != config.structures:
            raise ValueError(f"{source}: {len(structures)} structure names for {config.structures} structures")
        gen = _quiet(lambda: VolumeCVAE(config))
        seg = _quiet(lambda: VolumeSegmentor(config))
        try:
            gen.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("gen.")})
            seg.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("seg.")})
        except RuntimeError as exc:
            raise ValueError(f"{source}: weights do not fit the architecture: {str(exc).splitlines()[0]}") from None
        return cls(config, tuple(structures), freeze(gen), freeze(seg), state["frac.mean"].float(), state["frac.std"].float(), float(min_volume_ml))


def save_volume_model(model: VolumeStructureModel, path: str | Path, extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``model`` to the safetensors file ``path`` (through a temporary name)."""
    import os
    import tempfile

    from c3_core.weightsfile import safetensors_bytes

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".part")
    os.close(fd)
    try:
        Path(tmp).write_bytes(safetensors_bytes({k: v.contiguous() for k, v in model.state_dict().items()}, model.metadata(extra)))
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def load_volume_model(path: str | Path) -> VolumeStructureModel:
    """The model in safetensors file ``path`` (CPU); ValueError naming the file if it is not one."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    p = Path(path)
    try:
        with safe_open(str(p), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(p), device="cpu")
    except Exception as exc:  # noqa: BLE001 - any reader failure means the file is unusable
        raise ValueError(f"{p}: cannot read the volume structure model ({type(exc).__name__}: {exc})") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"{p}: not a {FORMAT} file (metadata format {meta.get('format')!r})")
    config = VolumeStructureConfig.from_json(json.loads(meta["config"]))
    return VolumeStructureModel.from_state_dict(
        state, config, json.loads(meta["structures"]), float(meta.get("min_volume_ml", "0")), source=str(p)
    )


def volume_statistics(frac: Tensor) -> tuple[Tensor, Tensor]:
    """Cohort mean and std ``(S,)`` of volume fractions ``(N, S)`` (std floored)."""
    return frac.mean(0), frac.std(0).clamp_min(1e-6)


def check_volume_data(u: Tensor, masks: Tensor, cfg: VolumeStructureConfig) -> None:
    if u.ndim != 5 or tuple(u.shape[1:]) != (cfg.channels, *cfg.grid):
        raise ValueError(f"volumes must be (N, {cfg.channels}, {', '.join(map(str, cfg.grid))}), got {tuple(u.shape)}")
    if masks.shape[0] != u.shape[0] or tuple(masks.shape[1:]) != (cfg.structures, *cfg.grid):
        raise ValueError(f"masks must be (N, {cfg.structures}, {', '.join(map(str, cfg.grid))}), got {tuple(masks.shape)}")
    if u.shape[0] < 2:
        raise ValueError(f"need at least 2 training volumes, got {u.shape[0]}")


def volume_fit_stages(
    u: Tensor, masks: Tensor, cfg: VolumeStructureConfig, tune: TuneSettings, generator: torch.Generator,
) -> list[tuple[str, StageBuilder]]:
    """The stages of the editor's fit: ``seg`` (guide), ``gen`` (conditional VAE), ``tuned`` (Seg-CFT
    against the guide read with ``tune.sharpness``, on ``tune.target``)."""
    check_volume_data(u, masks, cfg)
    masks = masks.float()
    frac = masks.flatten(2).mean(2)
    mean, std = volume_statistics(frac)
    return [
        ("seg", lambda done: segmentor_stage(lambda: _quiet(lambda: VolumeSegmentor(cfg)), init_segmentor3d, u, masks,
                                             cfg.seg_epochs_effective(), cfg.batch_size, cfg.lr, generator, patch=cfg.seg_patch)),
        ("gen", lambda done: generator_stage(lambda: _quiet(lambda: VolumeCVAE(cfg)), init_parameters3d, u, (frac - mean) / std,
                                             cfg.beta, cfg.gen_epochs, cfg.batch_size, cfg.lr, generator)),
        ("tuned", lambda done: fine_tune_stage(done["gen"], segmentor_measure(done["seg"], tune.sharpness), u, frac, masks, mean, std, tune, generator)),
    ]  # fmt: skip


def model_from_stages(
    done: Mapping[str, nn.Module], masks: Tensor, cfg: VolumeStructureConfig, structures: Sequence[str], min_volume_ml: float,
) -> VolumeStructureModel:
    """The editor's model from the finished stages of :func:`volume_fit_stages`."""
    mean, std = volume_statistics(masks.float().flatten(2).mean(2))
    return VolumeStructureModel(
        cfg, tuple(structures), freeze(done["tuned"]).cpu(), freeze(done["seg"]).cpu(), mean.cpu(), std.cpu(), float(min_volume_ml)
    )  # type: ignore[arg-type]
