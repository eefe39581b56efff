"""Seg-CFT's fitted model: the tuned generator, its guiding segmentor and the area standardisation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from c3_core.editors.nets import built_quietly
from c3_core.editors.structure_kernels import hard_area_px, intervene, soft_area, standardise
from c3_core.editors.structure_nets import ConditionalVAE, StructureModelConfig, StructureSegmentor, freeze


@dataclass
class StructureModel:
    """A (fine-tuned) conditional generator, its guiding segmentor and the area standardisation.

    ``frac_mean``/``frac_std`` ``(S,)`` map area fractions to generator conditions; ``structures``
    names the segmentor's channels.
    """

    config: StructureModelConfig
    structures: tuple[str, ...]
    generator: ConditionalVAE
    segmentor: StructureSegmentor
    frac_mean: Tensor
    frac_std: Tensor

    def index(self, name: str) -> int:
        if name not in self.structures:
            raise KeyError(f"unknown structure {name!r} (known: {', '.join(self.structures)})")
        return self.structures.index(name)

    @torch.no_grad()
    def segment_logits(self, u_small: Tensor) -> Tensor:
        return self.segmentor(u_small)

    @torch.no_grad()
    def edit_delta(self, u_small: Tensor, structure: int, ratio: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Working-grid change ``decode(z, c') - decode(z, c)`` for ``ratio (B,)`` on ``structure``.

        ``c`` comes from the segmentor's soft areas of ``u_small``. Returns the change, the
        original's segmentor logits and its hard area in px ``(B, S)``.
        """
        logits = self.segmentor(u_small)
        frac = soft_area(logits)
        s = torch.full((u_small.shape[0],), structure, dtype=torch.long, device=u_small.device)
        c_src = standardise(frac, self.frac_mean, self.frac_std)
        c_tgt = standardise(intervene(frac, s, ratio), self.frac_mean, self.frac_std)
        z = self.generator.abduct(u_small)
        delta = self.generator.decode(z, c_tgt) - self.generator.decode(z, c_src)
        return delta, logits, hard_area_px(logits)

    def to(self, device: torch.device | str) -> StructureModel:
        """A copy on ``device`` (networks frozen)."""
        gen = built_quietly(lambda: ConditionalVAE(self.config))
        gen.load_state_dict(self.generator.state_dict())
        seg = built_quietly(lambda: StructureSegmentor(self.config))
        seg.load_state_dict(self.segmentor.state_dict())
        return StructureModel(
            self.config, self.structures, freeze(gen.to(device)), freeze(seg.to(device)),
            self.frac_mean.to(device), self.frac_std.to(device),
        )  # fmt: skip

    def state_dict(self) -> dict[str, Tensor]:
        """A flat tensor dict for safetensors (architecture included, checked on load)."""
        out = {f"gen.{k}": v for k, v in self.generator.state_dict().items()}
        out.update({f"seg.{k}": v for k, v in self.segmentor.state_dict().items()})
        out.update({"frac.mean": self.frac_mean, "frac.std": self.frac_std, "meta.arch": self.config.arch_vector()})
        return out

    @classmethod
    def from_state_dict(
        cls, state: Mapping[str, Tensor], config: StructureModelConfig, structures: Sequence[str], source: str = "<state>"
    ) -> StructureModel:
        """Rebuild from :meth:`state_dict` output; raises ValueError naming ``source`` on a mismatch."""
        for key in ("meta.arch", "frac.mean", "frac.std"):
            if key not in state:
                raise ValueError(f"{source}: not a structure model (missing {key!r})")
        if not torch.equal(state["meta.arch"].cpu(), config.arch_vector()):
            raise ValueError(f"{source}: architecture {state['meta.arch'].tolist()} != config {config.arch_vector().tolist()}")
        if len(structures) != config.structures:
            raise ValueError(f"{source}: {len(structures)} structure names for {config.structures} structures")
        gen = built_quietly(lambda: ConditionalVAE(config))
        seg = built_quietly(lambda: StructureSegmentor(config))
        try:
            gen.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("gen.")})
            seg.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("seg.")})
        except RuntimeError as exc:
            raise ValueError(f"{source}: weights do not fit the architecture: {str(exc).splitlines()[0]}") from None
        return cls(config, tuple(structures), freeze(gen), freeze(seg), state["frac.mean"].float(), state["frac.std"].float())
