"""Concept perturbation (after CARS): insert or delete a finding along a latent concept direction.

For one case ``x`` (an image in the editor's intensity domain) the edit is

1. ``u = (x - offset) / scale`` (model units), resampled to the working grid ``size x size``;
2. ``z = E(u)``; ``z' = z + sign * alpha * sigma_v * v + jitter`` where ``v`` is the unit concept
   direction, ``sigma_v`` the within-class standard deviation of the latent codes along ``v``
   (so ``alpha`` is in *latent standard deviations*) and ``jitter`` a small latent noise
   orthogonal to ``v``;
3. ``delta = D(z') - D(z)``: the decoder *difference*, so the autoencoder's reconstruction error
   cancels and an ``alpha = 0`` edit is the identity;
4. ``w = feather(dilate(region))`` from the anatomy segmentor's masks of the original: ``w`` is 1 on
   the finding's region and exactly 0 farther than ``dilate_px + 4 * feather_px`` working pixels away;
5. ``x' = x + scale * upsample(w * delta)``: nothing changes outside the region's support.

Concept directions (one per finding, from the training cohort's latent codes ``Z`` and the
finding's labels ``y``): the difference of class-conditional means ``mu_1 - mu_0`` (CARS moves a
case's feature vector towards the finding's class), optionally the normal of an L2-regularised
logistic probe, then made orthogonal to the latent directions that predict the area of each
anatomy structure the finding must keep (ridge regression of the area on ``Z``), so moving along
``v`` does not, to first order, grow or shrink the lungs or heart.

The editor's ``check`` segments original and counterfactual and rejects a case whose preserved
anatomy has ``IoU < tau``, or that changed outside the region's support.

Randomness: network initialisation, shuffling and jitter come only from explicit generators.
"""

from __future__ import annotations

import copy
import math
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from c3_core.batch import Batch, CaseInfo
from c3_core.editors.nets import built_quietly, conv_block, init_parameters, model_on_device
from c3_core.operator import Editor, Severity
from c3_core.seeding import draw_seed, generator_from_seed
from c3_core.truth import set_unknown

DirectionMethod = Literal["mean_difference", "probe"]


# ---------------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConceptSpec:
    """One finding the concept model can insert or delete.

    ``label_index`` is its column in the multi-label targets; ``region`` names the anatomy
    channels whose (dilated) union bounds the edit; ``preserve`` names the anatomy channels that
    must keep ``IoU >= tau`` (and whose area the direction is made orthogonal to).
    """

    name: str
    label_index: int
    region: tuple[str, ...]
    preserve: tuple[str, ...]


@dataclass(frozen=True)
class ConceptModelConfig:
    """Architecture and training of the concept model (working grid ``size`` px, square)."""

    size: int = 64
    channels: int = 1
    widths: tuple[int, ...] = (16, 32, 64)  # autoencoder, one stride-2 level each
    seg_widths: tuple[int, int, int] = (8, 16, 32)  # segmentor U-Net levels
    latent_dim: int = 64
    ae_epochs: int = 25
    seg_epochs: int = 10
    batch_size: int = 32
    lr: float = 3e-3
    latent_noise: float = 0.05  # training-time latent noise (fraction of the code's RMS): smooths the decoder
    direction: DirectionMethod = "mean_difference"
    probe_l2: float = 1e-2
    ridge: float = 1.0  # ridge penalty of the anatomy-area regressions (standardised codes)

    def __post_init__(self) -> None:
        if self.size % (2 ** len(self.widths)) != 0:
            raise ValueError(f"size {self.size} must be divisible by 2**{len(self.widths)}")
        if self.direction not in ("mean_difference", "probe"):
            raise ValueError(f"direction must be 'mean_difference' or 'probe', got {self.direction!r}")

    def arch_vector(self) -> Tensor:
        """The integers that fix the state-dict layout (stored with the weights, checked on load)."""
        return torch.tensor([self.size, self.channels, self.latent_dim, *self.widths, *self.seg_widths], dtype=torch.int64)


# ---------------------------------------------------------------------------------------------
# networks
# ---------------------------------------------------------------------------------------------






class ConceptAutoencoder(nn.Module):
    """Convolutional autoencoder with a vector latent: ``(B, C, S, S) <-> (B, latent_dim)``.

    Encoder: one stride-2 conv block per width; decoder: nearest upsampling and one conv block per
    level, the last level a plain conv to ``C`` channels (cheap on a CPU).
    """

    def __init__(self, cfg: ConceptModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.widths
        self.grid = cfg.size // 2 ** len(w)
        enc: list[nn.Module] = []
        c = cfg.channels
        for width in w:
            enc.append(conv_block(c, width, stride=2))
            c = width
        self.encoder = nn.Sequential(*enc)
        self.to_latent = nn.Linear(w[-1] * self.grid**2, cfg.latent_dim)
        self.from_latent = nn.Linear(cfg.latent_dim, w[-1] * self.grid**2)
        dec: list[nn.Module] = []
        rev = w[::-1]
        for width_in, width_out in zip(rev[:-1], rev[1:]):
            dec += [nn.Upsample(scale_factor=2, mode="nearest"), conv_block(width_in, width_out)]
        dec += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(w[0], cfg.channels, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)

    def encode(self, u: Tensor) -> Tensor:
        return self.to_latent(self.encoder(u).flatten(1))

    def decode(self, z: Tensor) -> Tensor:
        h = self.from_latent(z).view(z.shape[0], self.cfg.widths[-1], self.grid, self.grid)
        return self.decoder(h)

    def forward(self, u: Tensor) -> Tensor:
        return self.decode(self.encode(u))


class AnatomySegmentor(nn.Module):
    """A three-level U-Net: ``(B, C, S, S)`` -> anatomy logits ``(B, A, S, S)`` (sigmoid each)."""

    def __init__(self, cfg: ConceptModelConfig, n_anatomy: int) -> None:
        super().__init__()
        a, b, c = cfg.seg_widths
        self.e1 = conv_block(cfg.channels, a)
        self.e2 = conv_block(a, b, stride=2)
        self.e3 = nn.Sequential(conv_block(b, c, stride=2), conv_block(c, c))
        self.d2 = conv_block(c + b, b)
        self.d1 = conv_block(b + a, a)
        self.out = nn.Conv2d(a, n_anatomy, 1)

    def forward(self, u: Tensor) -> Tensor:
        h1 = self.e1(u)
        h2 = self.e2(h1)
        h3 = self.e3(h2)
        g2 = self.d2(torch.cat([F.interpolate(h3, size=h2.shape[2:], mode="nearest"), h2], 1))
        return self.out(self.d1(torch.cat([F.interpolate(g2, size=h1.shape[2:], mode="nearest"), h1], 1)))


# ---------------------------------------------------------------------------------------------
# functional kernels
# ---------------------------------------------------------------------------------------------
def to_grid(u: Tensor, size: int) -> Tensor:
    """Resample ``(B, C, H, W)`` to ``(B, C, size, size)`` (bilinear, antialiased when shrinking)."""
    if tuple(u.shape[2:]) == (size, size):
        return u
    shrink = u.shape[2] > size or u.shape[3] > size
    return F.interpolate(u, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)


def from_grid(v: Tensor, shape: Sequence[int]) -> Tensor:
    """Resample working-grid maps back to the image's ``(H, W)`` (bilinear)."""
    if tuple(v.shape[2:]) == tuple(shape):
        return v
    return F.interpolate(v, size=tuple(shape), mode="bilinear", align_corners=False)


def dilate(mask: Tensor, radius: int) -> Tensor:
    """Binary dilation of ``(B, 1, H, W)`` masks by a (2r+1)-px square (max-pool)."""
    if radius <= 0:
        return mask
    return F.max_pool2d(mask, 2 * radius + 1, stride=1, padding=radius)


def feather(mask: Tensor, radius: int) -> Tensor:
    """Soften a binary mask with a (2r+1)-px box filter applied twice (a triangle kernel).

    The result is 1 where the mask holds at least ``2r`` px inside its edge, 0 where it is more
    than ``2r`` px outside, and ramps smoothly in between.
    """
    if radius <= 0:
        return mask
    k = 2 * radius + 1
    out = mask
    for _ in range(2):
        out = F.avg_pool2d(F.pad(out, (radius,) * 4, mode="replicate"), k, stride=1)
    return out.clamp(0.0, 1.0)


def soft_region(anatomy: Tensor, channels: Sequence[int], dilate_px: int, feather_px: int) -> Tensor:
    """Blend weight ``(B, 1, H, W)`` in [0, 1] from binary anatomy masks ``(B, A, H, W)``.

    The union of ``channels`` is dilated by ``dilate_px + 2 * feather_px`` and feathered by
    ``feather_px``: the weight is 1 on the union dilated by ``dilate_px`` and exactly 0 farther than
    ``dilate_px + 4 * feather_px`` px from the union.
    """
    if not channels:
        raise ValueError("soft_region needs at least one anatomy channel")
    union = anatomy[:, list(channels)].amax(1, keepdim=True).float()
    return feather(dilate(union, dilate_px + 2 * feather_px), feather_px)


def mean_difference_direction(z: Tensor, positive: Tensor) -> Tensor:
    """``mu_1 - mu_0`` of latent codes ``z (N, D)`` split by boolean ``positive (N,)``, unit norm."""
    pos = positive.bool()
    if pos.all() or not pos.any():
        raise ValueError("a concept direction needs positive and negative cases")
    v = z[pos].double().mean(0) - z[~pos].double().mean(0)
    return (v / v.norm()).to(z.dtype)


def probe_direction(z: Tensor, positive: Tensor, l2: float = 1e-2, steps: int = 50) -> Tensor:
    """Unit normal (in ``z``'s coordinates) of an L2-regularised logistic probe on standardised codes.

    Minimises ``mean BCE(xs @ w + b, y) + l2 * |w|^2`` by Newton's method (the bias is not
    penalised) in float64, so the result is deterministic.
    """
    pos = positive.bool()
    if pos.all() or not pos.any():
        raise ValueError("a concept direction needs positive and negative cases")
    x = z.double()
    mean, std = x.mean(0), x.std(0).clamp_min(1e-8)
    n, d = x.shape
    xs = torch.cat([(x - mean) / std, torch.ones((n, 1), dtype=torch.float64)], 1)
    y = pos.double()
    penalty = torch.full((d + 1,), 2.0 * l2, dtype=torch.float64)
    penalty[-1] = 0.0
    theta = torch.zeros(d + 1, dtype=torch.float64)
    for _ in range(steps):
        p = torch.sigmoid(xs @ theta)
        grad = xs.T @ (p - y) / n + penalty * theta
        hess = (xs.T * (p * (1 - p))) @ xs / n + torch.diag(penalty) + 1e-12 * torch.eye(d + 1, dtype=torch.float64)
        step = torch.linalg.solve(hess, grad)
        theta = theta - step
        if float(step.abs().max()) < 1e-12:
            break
    v = theta[:d] / std  # d(score)/dz
    return (v / v.norm()).to(z.dtype)


def ridge_direction(z: Tensor, target: Tensor, ridge: float) -> Tensor:
    """Unit direction in ``z`` along which a ridge regression predicts ``target (N,)`` to grow."""
    x = z.double()
    mean, std = x.mean(0), x.std(0).clamp_min(1e-8)
    xs = (x - mean) / std
    t = target.double() - target.double().mean()
    a = xs.T @ xs + ridge * torch.eye(x.shape[1], dtype=torch.float64)
    coef = torch.linalg.solve(a, xs.T @ t) / std
    n = coef.norm()
    if n == 0:
        raise ValueError("the regression target does not vary: no direction")
    return (coef / n).to(z.dtype)


def project_out(v: Tensor, basis: Sequence[Tensor]) -> Tensor:
    """``v`` with its components along ``basis`` (any vectors) removed, renormalised to unit length."""
    if not basis:
        return v / v.norm()
    q, _ = torch.linalg.qr(torch.stack([b.double() for b in basis], 1))
    r = v.double() - q @ (q.T @ v.double())
    n = r.norm()
    if n < 1e-6 * v.double().norm():
        raise ValueError("the concept direction lies in the span of the protected anatomy directions")
    return (r / n).to(v.dtype)


def within_class_std(z: Tensor, positive: Tensor, v: Tensor) -> float:
    """Pooled within-class standard deviation of the projections ``z @ v``."""
    s = (z.double() @ v.double())
    pos = positive.bool()
    resid = torch.cat([s[pos] - s[pos].mean(), s[~pos] - s[~pos].mean()])
    return float(torch.sqrt((resid**2).sum() / max(1, s.numel() - 2)))


def shift_latent(z: Tensor, direction: Tensor, shift: Tensor, noise: Tensor | None = None) -> Tensor:
    """``z + shift[:, None] * direction`` plus ``noise`` with its component along ``direction`` removed."""
    out = z + shift.view(-1, 1) * direction.view(1, -1)
    if noise is not None:
        along = (noise @ direction).view(-1, 1) * direction.view(1, -1)
        out = out + (noise - along)
    return out


def mask_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU per case of boolean masks ``(B, ...)``; 1.0 when both are empty."""
    a, b = a.flatten(1).bool(), b.flatten(1).bool()
    inter = (a & b).sum(1).double()
    union = (a | b).sum(1).double()
    return torch.where(union > 0, inter / union.clamp_min(1.0), torch.ones_like(union))


# ---------------------------------------------------------------------------------------------
# the fitted concept model
# ---------------------------------------------------------------------------------------------
@dataclass
class ConceptModel:
    """Autoencoder, anatomy segmentor and one direction per concept.

    ``directions (F, D)`` are unit vectors; ``sigma (F,)`` the within-class latent standard
    deviation along each (the unit of ``alpha``); ``separation (F,)`` the distance between the
    class means along each direction in those units; ``latent_std (D,)`` the per-dimension
    standard deviation of the cohort's codes (the unit of the jitter).
    """

    config: ConceptModelConfig
    concepts: tuple[ConceptSpec, ...]
    anatomy: tuple[str, ...]
    autoencoder: ConceptAutoencoder
    segmentor: AnatomySegmentor
    directions: Tensor
    sigma: Tensor
    separation: Tensor
    latent_std: Tensor

    def concept(self, name: str) -> tuple[int, ConceptSpec]:
        for i, c in enumerate(self.concepts):
            if c.name == name:
                return i, c
        raise KeyError(f"unknown concept {name!r} (known: {', '.join(c.name for c in self.concepts)})")

    def anatomy_index(self, names: Sequence[str]) -> list[int]:
        missing = [n for n in names if n not in self.anatomy]
        if missing:
            raise KeyError(f"unknown anatomy channel(s) {missing} (known: {list(self.anatomy)})")
        return [self.anatomy.index(n) for n in names]

    def to(self, device: torch.device | str) -> ConceptModel:
        """A copy on ``device`` (networks in eval mode)."""
        ae = copy.deepcopy(self.autoencoder).to(device).eval()
        seg = copy.deepcopy(self.segmentor).to(device).eval()
        return ConceptModel(
            self.config, self.concepts, self.anatomy, ae, seg, self.directions.to(device), self.sigma.to(device),
            self.separation.to(device), self.latent_std.to(device),
        )  # fmt: skip

    @torch.no_grad()
    def segment(self, u: Tensor) -> Tensor:
        """Binary anatomy masks ``(B, A, S, S)`` of working-grid images ``u``."""
        return self.segmentor(u) > 0.0

    def state_dict(self) -> dict[str, Tensor]:
        """A flat tensor dict for safetensors (architecture and concept count included)."""
        out = {f"ae.{k}": v for k, v in self.autoencoder.state_dict().items()}
        out.update({f"seg.{k}": v for k, v in self.segmentor.state_dict().items()})
        out.update({
            "concepts.direction": self.directions, "concepts.sigma": self.sigma,
            "concepts.separation": self.separation, "latent.std": self.latent_std,
            "meta.arch": self.config.arch_vector(),
            "meta.shape": torch.tensor([len(self.concepts), len(self.anatomy)], dtype=torch.int64),
        })  # fmt: skip
        return out

    @classmethod
    def from_state_dict(
        cls,
        state: Mapping[str, Tensor],
        config: ConceptModelConfig,
        concepts: Sequence[ConceptSpec],
        anatomy: Sequence[str],
        source: str = "<state>",
    ) -> ConceptModel:
        """Rebuild from :meth:`state_dict` output; raises ValueError naming ``source`` on a mismatch."""
        for key in ("meta.arch", "meta.shape", "concepts.direction", "concepts.sigma", "concepts.separation", "latent.std"):
            if key not in state:
                raise ValueError(f"{source}: not a concept model (missing {key!r})")
        if not torch.equal(state["meta.arch"].cpu(), config.arch_vector()):
            raise ValueError(f"{source}: architecture {state['meta.arch'].tolist()} != config {config.arch_vector().tolist()}")
        shape = state["meta.shape"].tolist()
        if shape != [len(concepts), len(anatomy)]:
            raise ValueError(f"{source}: has {shape[0]} concepts / {shape[1]} anatomy channels, expected {len(concepts)} / {len(anatomy)}")
        ae = built_quietly(lambda: ConceptAutoencoder(config))
        ae.load_state_dict({k[3:]: v for k, v in state.items() if k.startswith("ae.")})
        seg = built_quietly(lambda: AnatomySegmentor(config, len(anatomy)))
        seg.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("seg.")})
        return cls(
            config, tuple(concepts), tuple(anatomy), ae.eval(), seg.eval(), state["concepts.direction"].float(),
            state["concepts.sigma"].float(), state["concepts.separation"].float(), state["latent.std"].float(),
        )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------------
def _epochs(n: int, batch_size: int, epochs: int, g: torch.Generator) -> list[Tensor]:
    return [chunk for _ in range(epochs) for chunk in torch.randperm(n, generator=g).split(batch_size)]


def train_autoencoder(u: Tensor, cfg: ConceptModelConfig, generator: torch.Generator) -> ConceptAutoencoder:
    """Fit the autoencoder to working-grid images ``u (N, C, S, S)`` (MSE; AdamW, one-cycle)."""
    ae = built_quietly(lambda: ConceptAutoencoder(cfg)).to(u.device)
    init_parameters(ae, generator)
    steps = _epochs(u.shape[0], cfg.batch_size, cfg.ae_epochs, generator)
    opt = torch.optim.AdamW(ae.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(1, len(steps)))
    ae.train()
    for idx in steps:
        x = u[idx.to(u.device)]
        z = ae.encode(x)
        if cfg.latent_noise > 0:
            rms = z.detach().pow(2).mean().sqrt()
            noise = torch.randn(z.shape, generator=generator).to(z.device)
            z = z + cfg.latent_noise * rms * noise
        loss = F.mse_loss(ae.decode(z), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return ae.eval()


def train_segmentor(u: Tensor, masks: Tensor, cfg: ConceptModelConfig, generator: torch.Generator) -> AnatomySegmentor:
    """Fit the anatomy segmentor to ``masks (N, A, S, S)`` in {0, 1} (BCE + soft Dice per channel)."""
    seg = built_quietly(lambda: AnatomySegmentor(cfg, masks.shape[1])).to(u.device)
    init_parameters(seg, generator)
    steps = _epochs(u.shape[0], cfg.batch_size, cfg.seg_epochs, generator)
    opt = torch.optim.AdamW(seg.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(1, len(steps)))
    seg.train()
    for idx in steps:
        i = idx.to(u.device)
        logits, y = seg(u[i]), masks[i]
        p = torch.sigmoid(logits)
        dice = 1 - (2 * (p * y).sum((0, 2, 3)) + 1) / (p.sum((0, 2, 3)) + y.sum((0, 2, 3)) + 1)
        loss = F.binary_cross_entropy_with_logits(logits, y) + dice.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return seg.eval()


@torch.no_grad()
def encode_all(ae: ConceptAutoencoder, u: Tensor, batch_size: int = 128) -> Tensor:
    """Latent codes ``(N, D)`` of working-grid images, in chunks."""
    return torch.cat([ae.encode(chunk) for chunk in u.split(batch_size)])


def fit_concept_model(
    u: Tensor,
    labels: Tensor,
    anatomy_masks: Tensor,
    *,
    concepts: Sequence[ConceptSpec],
    anatomy: Sequence[str],
    config: ConceptModelConfig,
    seed: int,
) -> ConceptModel:
    """Train the autoencoder and segmentor and derive one direction per concept.

    ``u (N, C, S, S)`` working-grid images in model units; ``labels (N, F)`` multi-label targets
    (NaN = unknown, skipped per concept); ``anatomy_masks (N, A, S, S)`` in {0, 1}, channels named
    by ``anatomy``. Deterministic for a given ``seed`` on one device.
    """
    s = config.size
    if u.ndim != 4 or tuple(u.shape[1:]) != (config.channels, s, s):
        raise ValueError(f"images must be (N, {config.channels}, {s}, {s}), got {tuple(u.shape)}")
    if anatomy_masks.shape[0] != u.shape[0] or anatomy_masks.shape[1] != len(anatomy) or tuple(anatomy_masks.shape[2:]) != (s, s):
        raise ValueError(f"anatomy masks must be (N, {len(anatomy)}, {s}, {s}), got {tuple(anatomy_masks.shape)}")
    g = torch.Generator().manual_seed(int(seed))
    ae = train_autoencoder(u, config, g)
    seg = train_segmentor(u, anatomy_masks.float(), config, g)
    z = encode_all(ae, u).cpu()
    areas = anatomy_masks.float().flatten(2).mean(2).cpu()  # (N, A) area fractions
    dirs, sigmas, seps = [], [], []
    for spec in concepts:
        y = labels[:, spec.label_index].cpu()
        known = torch.isfinite(y)
        zk, pos = z[known], y[known] > 0.5
        v = mean_difference_direction(zk, pos) if config.direction == "mean_difference" else probe_direction(zk, pos, config.probe_l2)
        protect = [  # a structure whose area never varies in the cohort has no direction to avoid
            ridge_direction(z, areas[:, anatomy.index(a)], config.ridge) for a in spec.preserve if float(areas[:, anatomy.index(a)].std()) > 0
        ]
        v = project_out(v, protect)
        sigma = within_class_std(zk, pos, v)
        proj = zk.double() @ v.double()
        dirs.append(v)
        sigmas.append(sigma)
        seps.append(float((proj[pos].mean() - proj[~pos].mean()) / sigma))
    model = ConceptModel(
        config, tuple(concepts), tuple(anatomy), ae.cpu(), seg.cpu(), torch.stack(dirs).float(),
        torch.tensor(sigmas, dtype=torch.float32), torch.tensor(seps, dtype=torch.float32), z.std(0).float(),
    )  # fmt: skip
    return model


# ---------------------------------------------------------------------------------------------
# the edit
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EditResult:
    change: Tensor  # (B, C, H, W) weighted change in model units: u' = u + change
    weight: Tensor  # (B, 1, H, W) blend weight at image resolution (exactly 0 outside the support)
    anatomy: Tensor  # (B, A, S, S) segmentor masks of the original


@torch.no_grad()
def concept_edit(
    model: ConceptModel,
    u: Tensor,
    concept: int,
    shift: Tensor,
    *,
    region: Sequence[int],
    dilate_px: int,
    feather_px: int,
    noise: Tensor | None = None,
) -> EditResult:
    """The change that moves images ``u (B, C, H, W)`` (model units) by ``shift (B,)`` latent units
    along concept ``concept``: ``w * upsample(D(z') - D(z))``, with the blend weight and the
    originals' anatomy masks."""
    small = to_grid(u, model.config.size)
    ae = model.autoencoder
    z = ae.encode(small)
    z2 = shift_latent(z, model.directions[concept], shift, noise)
    delta = ae.decode(z2) - ae.decode(z)
    anatomy = model.segment(small)
    w_small = soft_region(anatomy, region, dilate_px, feather_px)
    weight = from_grid(w_small, u.shape[2:]).clamp(0.0, 1.0)
    weight = torch.where(weight < 1e-6, torch.zeros_like(weight), weight)  # exact zero outside the support
    return EditResult(weight * from_grid(delta, u.shape[2:]), weight, anatomy)


# ---------------------------------------------------------------------------------------------
# the generic editor
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConceptParams:
    """``alpha``: shift along the concept direction, latent standard deviations (>= 0; the editor's
    sign says insert or delete). ``jitter``: latent noise orthogonal to the direction, in units of
    the cohort's per-dimension latent standard deviation. ``noise_seed``: its realisation."""

    alpha: float
    jitter: float
    noise_seed: int


class ConceptEditor(Editor[ConceptParams]):
    """Insert (``sign = +1``) or delete (``sign = -1``) the finding ``concept`` (see module docstring).

    Plugin subclasses set ``id``, ``modality``, ``domain``, ``concept``, ``sign``, ``summary``,
    ``expected_effect``, the affine map to model units (``intensity_offset``, ``intensity_scale``),
    an optional ``lower_bound`` of the domain, and implement :meth:`load_model` (CPU).

    Options: ``tau`` — the anatomy IoU every preserved structure must keep; ``jitter`` — the
    latent noise scale drawn into each case's params; ``dilate_px`` / ``feather_px`` — the region
    margin on the working grid.

    Changes: on every case with ``alpha > 0`` the label's column of the finding
    (:attr:`ConceptSpec.label_index`) becomes 1 (insert) or 0 (delete) — multi-label targets only;
    the mask channels that outline findings (``finding_mask_channels``; a subclass with any
    declares ``"mask"`` in ``changes`` too) become unknown (NaN), the anatomy channels are kept
    (:meth:`check` rejects a case whose preserved anatomy moved).
    """

    intent: ClassVar[Literal["admissible", "interventional"]] = "interventional"
    version: ClassVar[str] = "1"
    preserves: ClassVar[frozenset[str]] = frozenset()  # the finding changes: label, and its mask, no longer hold
    changes: ClassVar[frozenset[str]] = frozenset({"label"})
    finding_mask_channels: ClassVar[tuple[int, ...]] = ()
    spatial_dims: ClassVar[tuple[int, ...]] = (2,)
    severity: ClassVar[Severity] = Severity("concept_shift", "latent standard deviations", 0.0, 4.0, (1.0, 2.0, 3.0, 4.0))
    params_type: ClassVar[type] = ConceptParams
    concept: ClassVar[str]
    sign: ClassVar[int]
    intensity_offset: ClassVar[float] = 0.0
    intensity_scale: ClassVar[float] = 1.0
    lower_bound: ClassVar[float | None] = None

    def __init__(self, tau: float = 0.8, jitter: float = 0.1, dilate_px: int = 2, feather_px: int = 1) -> None:
        if not 0.0 <= float(tau) <= 1.0:
            raise ValueError(f"{self.id}: tau must be in [0, 1], got {tau!r}")
        if not (math.isfinite(float(jitter)) and float(jitter) >= 0.0):
            raise ValueError(f"{self.id}: jitter must be a finite number >= 0, got {jitter!r}")
        if int(dilate_px) < 0 or int(feather_px) < 0:
            raise ValueError(f"{self.id}: dilate_px and feather_px must be >= 0")
        if self.sign not in (1, -1):
            raise TypeError(f"{type(self).__name__}: sign must be +1 or -1")
        if self.finding_mask_channels and "mask" not in self.changes:
            raise TypeError(f"{type(self).__name__}: finding_mask_channels are edited: declare 'mask' in changes")
        self.tau = float(tau)
        self.jitter = float(jitter)
        self.dilate_px = int(dilate_px)
        self.feather_px = int(feather_px)
        self._models: dict[str, ConceptModel] = {}

    @classmethod
    @abstractmethod
    def load_model(cls) -> ConceptModel:
        """The fitted concept model on the CPU (trained and cached by the plugin on first use)."""

    def model(self, device: torch.device | str) -> ConceptModel:
        """The concept model on ``device`` (loaded once per editor instance and device)."""
        return model_on_device(self._models, device, self.load_model, lambda m, d: m.to(d))

    # -- params ---------------------------------------------------------------------------
    def _sample(self, info: CaseInfo, generator: torch.Generator, severity: float) -> ConceptParams:
        return ConceptParams(alpha=float(severity), jitter=self.jitter, noise_seed=draw_seed(generator))

    # -- apply ----------------------------------------------------------------------------
    def _edit(self, batch: Batch, params: Sequence[ConceptParams]) -> tuple[Tensor, EditResult, ConceptModel]:
        model = self.model(batch.device)
        index, spec = model.concept(self.concept)
        dev, dt = batch.device, batch.image.dtype
        shift = torch.tensor([self.sign * p.alpha for p in params], device=dev, dtype=dt) * model.sigma[index]
        noise = torch.stack([
            torch.randn(model.config.latent_dim, generator=generator_from_seed(p.noise_seed)) * p.jitter for p in params
        ]).to(dev, dt) * model.latent_std.to(dt)  # fmt: skip
        u = (batch.image - self.intensity_offset) / self.intensity_scale
        res = concept_edit(
            model, u, index, shift, region=model.anatomy_index(spec.region),
            dilate_px=self.dilate_px, feather_px=self.feather_px, noise=noise,
        )  # fmt: skip
        out = batch.image + (res.change * self.intensity_scale).to(dt)
        if self.lower_bound is not None:
            out = out.clamp_min(self.lower_bound)
        return torch.where(res.weight > 0, out, batch.image), res, model

    def _apply(self, batch: Batch, params: Sequence[ConceptParams]) -> Batch:
        image, _, model = self._edit(batch, params)
        edited = torch.tensor([p.alpha > 0 for p in params], dtype=torch.bool)
        label = None if batch.label is None else self.expected_label(batch.label, edited, model.concept(self.concept)[1].label_index)
        mask = batch.mask
        if mask is not None and "mask" in self.changes:
            if max(self.finding_mask_channels, default=-1) >= mask.shape[1]:
                raise ValueError(f"{self.id}: the mask has {mask.shape[1]} channel(s), findings are in {self.finding_mask_channels}")
            mask = set_unknown(mask, edited, self.finding_mask_channels) if self.finding_mask_channels else mask
        return batch.replace(image=image, label=label, mask=mask)

    def expected_label(self, label: Tensor, edited: Tensor, label_index: int) -> Tensor:
        """Multi-label targets ``(B, F)`` with column ``label_index`` set to 1 (insert) or 0
        (delete) on the rows ``edited (B,)`` bool."""
        if not label.is_floating_point() or label.ndim != 2 or label.shape[1] <= label_index:
            raise ValueError(
                f"{self.id}: moves multi-label column {label_index}; got a label of dtype {label.dtype}, "
                f"shape {tuple(label.shape)}"
            )
        out = label.clone()
        rows = edited.to(label.device)
        out[rows, label_index] = 1.0 if self.sign > 0 else 0.0
        return out

    # -- validity -------------------------------------------------------------------------
    @torch.no_grad()
    def anatomy_iou(self, original: Batch, counterfactual: Batch) -> dict[str, Tensor]:
        """IoU ``(B,)`` of the segmentor's masks of original and counterfactual, per preserved structure."""
        model = self.model(original.device)
        _, spec = model.concept(self.concept)
        size = model.config.size
        a = model.segment(to_grid((original.image - self.intensity_offset) / self.intensity_scale, size))
        b = model.segment(to_grid((counterfactual.image - self.intensity_offset) / self.intensity_scale, size))
        return {name: mask_iou(a[:, i], b[:, i]).cpu() for name, i in zip(spec.preserve, model.anatomy_index(spec.preserve))}

    @torch.no_grad()
    def outside_change(self, original: Batch, counterfactual: Batch) -> Tensor:
        """Max |x' - x| per case where the blend weight of the original is exactly 0 (domain units)."""
        model = self.model(original.device)
        _, spec = model.concept(self.concept)
        u = (original.image - self.intensity_offset) / self.intensity_scale
        anatomy = model.segment(to_grid(u, model.config.size))
        w = from_grid(soft_region(anatomy, model.anatomy_index(spec.region), self.dilate_px, self.feather_px), u.shape[2:])
        w = torch.where(w < 1e-6, torch.zeros_like(w), w)
        diff = (counterfactual.image - original.image).abs() * (w == 0)
        return diff.flatten(1).amax(1).cpu()

    def check(self, original: Batch, counterfactual: Batch, params: Sequence[ConceptParams]) -> list[str | None]:
        """Reject a case whose preserved anatomy has IoU < tau or that changed outside its region."""
        reasons: list[list[str]] = [[] for _ in range(original.size)]
        for name, values in self.anatomy_iou(original, counterfactual).items():
            for i, v in enumerate(values.tolist()):
                if v < self.tau:
                    reasons[i].append(f"{self.id}: {name} IoU {v:.3f} < tau {self.tau:g}")
        for i, v in enumerate(self.outside_change(original, counterfactual).tolist()):
            if v > 0.0:
                reasons[i].append(f"{self.id}: changed by {v:.3g} outside the {self.concept} region")
        return ["; ".join(r) if r else None for r in reasons]

    @classmethod
    def describe(cls) -> dict[str, Any]:
        d = super().describe()
        d.update(concept=cls.concept, sign=cls.sign)
        return d
