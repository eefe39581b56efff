"""The diffusion editor's denoiser: configuration, label-conditioned UNet, noise schedule, safe I/O.

The network is a diffusers ``UNet2DModel`` predicting the noise ``eps`` (the standard DDPM
objective). Weak labels condition it through ``class_embed_type="identity"``: the label vector
``c (B, n_labels)`` — each entry +1 (finding present / this grade), -1 (absent) or 0 (unknown or
dropped) — is projected by a bias-free linear map to the time-embedding width and added to the
timestep embedding. A zero vector therefore gives exactly the unconditional model (label dropout
during training teaches it). Multi-label CXR findings and one-hot fundus grades use the same path.

Weights are stored as safetensors with a JSON config beside them (``model.safetensors`` +
``model.json``); loading refuses any other format. diffusers is imported only when a network or
schedule is built (extra ``c3-core[diffusion]``).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from c3_core.editors.nets import init_parameters

INSTALL_HINT = "pip install 'c3-core[diffusion]' (diffusers)"
FORMAT = "c3-diffusion-editor"
FORMAT_VERSION = 1
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")


class DiffusionWeightsError(ValueError):
    """A diffusion-editor weights file or config that cannot be used (the message names the file)."""


@dataclass(frozen=True)
class DiffusionConfig:
    """Architecture, noise schedule and intensity normalisation of one denoiser.

    ``size``: working grid (px, square); ``widths``: UNet block widths (one down/up level each);
    ``attention``: self-attention in the coarsest down/up blocks too (the UNet's mid block always
    has one); ``max_strength``: training draws timesteps ``t < max_strength * train_timesteps`` only, since
    SDEdit edits never start higher (fraction of the trajectory, in (0, 1]); ``low_percentile`` /
    ``high_percentile``: per-image percentiles (in %) mapped to -1 and +1.
    """

    size: int = 64
    channels: int = 1
    n_labels: int = 5
    widths: tuple[int, ...] = (16, 32, 64)
    layers_per_block: int = 1
    norm_groups: int = 8
    attention: bool = False
    train_timesteps: int = 1000
    beta_schedule: str = "linear"
    beta_start: float = 1e-4
    beta_end: float = 0.02
    max_strength: float = 0.6
    low_percentile: float = 0.5
    high_percentile: float = 99.5

    def __post_init__(self) -> None:
        if not self.widths or any(int(w) < 1 for w in self.widths):
            raise ValueError(f"DiffusionConfig.widths must be positive integers, got {self.widths!r}")
        if any(int(w) % int(self.norm_groups) for w in self.widths):
            raise ValueError(f"DiffusionConfig.widths {self.widths} must be divisible by norm_groups={self.norm_groups}")
        levels = 2 ** (len(self.widths) - 1)
        if int(self.size) < 8 or int(self.size) % levels:
            raise ValueError(f"DiffusionConfig.size {self.size} must be >= 8 and divisible by {levels} (2**(len(widths)-1))")
        for name in ("channels", "n_labels", "layers_per_block", "train_timesteps"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"DiffusionConfig.{name} must be >= 1, got {getattr(self, name)!r}")
        if self.beta_schedule not in BETA_SCHEDULES:
            raise ValueError(f"DiffusionConfig.beta_schedule must be one of {BETA_SCHEDULES}, got {self.beta_schedule!r}")
        if not 0.0 < float(self.beta_start) < float(self.beta_end) < 1.0:
            raise ValueError(f"DiffusionConfig needs 0 < beta_start < beta_end < 1, got {self.beta_start}, {self.beta_end}")
        if not 0.0 < float(self.max_strength) <= 1.0:
            raise ValueError(f"DiffusionConfig.max_strength must be in (0, 1], got {self.max_strength!r}")
        if not 0.0 <= float(self.low_percentile) < float(self.high_percentile) <= 100.0:
            raise ValueError(
                f"DiffusionConfig needs 0 <= low_percentile < high_percentile <= 100, got {self.low_percentile}, {self.high_percentile}"
            )

    @property
    def time_embed_dim(self) -> int:
        return int(self.widths[0]) * 4

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["widths"] = list(self.widths)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> DiffusionConfig:
        """Rebuild from :meth:`to_dict`; unknown keys or bad values raise ValueError naming ``source``."""
        if not isinstance(data, dict):
            raise ValueError(f"{source}: the config must be a JSON object, got {type(data).__name__}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"{source}: unknown config key(s) {unknown} (known: {sorted(names)})")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        try:
            return cls(**values)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{source}: {exc}") from None

    def digest(self) -> str:
        """A short stable hash of the config (names cached weights)."""
        return hashlib.blake2b(json.dumps(self.to_dict(), sort_keys=True).encode(), digest_size=6).hexdigest()


def require_diffusers() -> Any:
    """The ``diffusers`` module, or an ImportError with the install hint."""
    try:
        import diffusers
    except ImportError:
        raise ImportError(f"the diffusion editor needs diffusers: {INSTALL_HINT}") from None
    return diffusers


def make_scheduler(config: DiffusionConfig) -> Any:
    """diffusers ``DDIMScheduler`` for ``config`` (epsilon prediction, no x0 clipping, final alpha-bar 1)."""
    diffusers = require_diffusers()
    return diffusers.DDIMScheduler(
        num_train_timesteps=config.train_timesteps, beta_start=config.beta_start, beta_end=config.beta_end,
        beta_schedule=config.beta_schedule, clip_sample=False, set_alpha_to_one=True, prediction_type="epsilon",
    )  # fmt: skip


def alphas_cumprod(config: DiffusionConfig) -> Tensor:
    """Cumulative signal fractions alpha-bar_t, ``(train_timesteps,)`` float32, from the DDIM scheduler."""
    return make_scheduler(config).alphas_cumprod.to(torch.float32).clone()


class LabelConditionedUNet(nn.Module):
    """``eps = UNet(x_t, t, W c)``: diffusers UNet2DModel with a bias-free label projection ``W``."""

    def __init__(self, config: DiffusionConfig) -> None:
        super().__init__()
        diffusers = require_diffusers()
        n = len(config.widths)
        down = ["DownBlock2D"] * n
        up = ["UpBlock2D"] * n
        if config.attention:  # self-attention also in the coarsest down/up blocks (the mid block always has it)
            down[-1], up[0] = "AttnDownBlock2D", "AttnUpBlock2D"
        self.unet = diffusers.UNet2DModel(
            sample_size=config.size, in_channels=config.channels, out_channels=config.channels,
            block_out_channels=tuple(int(w) for w in config.widths), layers_per_block=config.layers_per_block,
            down_block_types=tuple(down), up_block_types=tuple(up), norm_num_groups=config.norm_groups,
            class_embed_type="identity",
        )  # fmt: skip
        self.label_proj = nn.Linear(config.n_labels, config.time_embed_dim, bias=False)

    def forward(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        return self.unet(x_t, t, class_labels=self.label_proj(cond.to(x_t.dtype))).sample




@dataclass
class DiffusionModel:
    """A denoiser and its config (network in eval mode unless training)."""

    config: DiffusionConfig
    network: LabelConditionedUNet

    def eps(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        """Predicted noise for ``x_t (B, C, S, S)`` at integer timesteps ``t (B,)`` given ``cond (B, n_labels)``."""
        return self.network(x_t, t, cond)

    def to(self, device: torch.device | str) -> DiffusionModel:
        """A copy on ``device`` (eval mode)."""
        net = _new_network(self.config)
        net.load_state_dict(self.network.state_dict())
        return DiffusionModel(self.config, net.to(device).eval())

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device


def _new_network(config: DiffusionConfig) -> LabelConditionedUNet:
    with torch.random.fork_rng(devices=[]):  # diffusers initialises from the global RNG: leave it untouched
        return LabelConditionedUNet(config)


def build_model(config: DiffusionConfig, generator: torch.Generator) -> DiffusionModel:
    """A freshly initialised denoiser; every weight drawn from ``generator``."""
    net = _new_network(config)
    init_parameters(net, generator)
    return DiffusionModel(config, net)


def config_path_for(weights: str | Path) -> Path:
    """The JSON config that belongs to a ``.safetensors`` weights file (same stem, ``.json``)."""
    return Path(weights).with_suffix(".json")


def _atomic_write(path: Path, write: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".part")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_model(model: DiffusionModel, path: str | Path, extra: dict[str, Any] | None = None) -> tuple[Path, Path]:
    """Write ``path`` (safetensors, must end in ``.safetensors``) and its JSON config; returns both paths.

    ``extra`` (JSON values, e.g. training settings) is stored under ``"training"`` in the JSON.
    Both files are written to temporary names and renamed into place.
    """
    from safetensors.torch import save_file

    p = Path(path)
    if p.suffix != ".safetensors":
        raise DiffusionWeightsError(f"{p}: diffusion-editor weights must be saved as .safetensors")
    p.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.network.state_dict().items()}
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": model.config.to_dict(), "training": extra or {}}
    cfg = config_path_for(p)
    _atomic_write(p, lambda tmp: save_file(state, tmp, metadata={"format": FORMAT}))
    _atomic_write(cfg, lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=2, sort_keys=True)))
    return p, cfg


def read_config(path: str | Path) -> DiffusionConfig:
    """The :class:`DiffusionConfig` in the JSON beside weights ``path``; DiffusionWeightsError otherwise."""
    cfg = config_path_for(path)
    if not cfg.is_file():
        raise DiffusionWeightsError(f"{cfg}: config JSON not found (expected beside {Path(path).name})")
    try:
        meta = json.loads(cfg.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DiffusionWeightsError(f"{cfg}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DiffusionWeightsError(f"{cfg}: not a {FORMAT} config (format key is {meta.get('format') if isinstance(meta, dict) else None!r})")
    if meta.get("format_version") != FORMAT_VERSION:
        raise DiffusionWeightsError(f"{cfg}: format_version {meta.get('format_version')!r} is not supported (expected {FORMAT_VERSION})")
    try:
        return DiffusionConfig.from_dict(meta.get("config"), source=str(cfg))  # type: ignore[arg-type]
    except ValueError as exc:
        raise DiffusionWeightsError(str(exc)) from None


def model_from_state(state: dict[str, Tensor], config: DiffusionConfig, source: str = "<state>") -> DiffusionModel:
    """A denoiser with ``state`` loaded strictly; DiffusionWeightsError naming ``source`` on a mismatch."""
    net = _new_network(config)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = " ".join(str(exc).splitlines()[:3])
        raise DiffusionWeightsError(f"{source}: weights do not fit the config's architecture: {first}") from None
    return DiffusionModel(config, net.eval())


def load_model(path: str | Path) -> DiffusionModel:
    """Load ``path`` (``.safetensors``) with its JSON config; refuses pickles and any other format."""
    p = Path(path)
    if p.suffix != ".safetensors":
        raise DiffusionWeightsError(f"{p}: diffusion-editor weights must be a .safetensors file (with a .json config beside it)")
    if not p.is_file():
        raise DiffusionWeightsError(f"{p}: weights file not found")
    config = read_config(p)
    from safetensors.torch import load_file

    try:
        state = load_file(str(p), device="cpu")
    except Exception as exc:  # noqa: BLE001 - any decoder failure means the file is unusable
        raise DiffusionWeightsError(f"{p}: cannot read safetensors ({type(exc).__name__}: {exc})") from None
    return model_from_state(state, config, source=str(p))
