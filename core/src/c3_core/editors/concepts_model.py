"""Concept perturbation's fitted model (networks and one latent direction per concept) and its edit."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from c3_core.editors.concepts_kernels import from_grid, shift_latent, soft_region, to_grid
from c3_core.editors.concepts_nets import AnatomySegmentor, ConceptAutoencoder, ConceptModelConfig, ConceptSpec
from c3_core.editors.nets import built_quietly


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
