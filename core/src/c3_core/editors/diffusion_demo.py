"""A diffusion editor whose defaults are its plugin's demo: the cached demo denoiser and the demo task model."""

from __future__ import annotations

import importlib
from typing import Any, ClassVar

from c3_core.editors.diffusion import DiffusionEditor, encode_labels
from c3_core.editors.diffusion_model import DiffusionModel
from c3_core.editors.scorer import Scorer


def _resolve(path: str) -> Any:
    """The object a ``"module:attribute"`` path names (imported on use)."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


class DemoDiffusionEditor(DiffusionEditor):
    """:class:`DiffusionEditor` with the plugin's demo as its defaults, declared, not written out.

    * default model: ``model_config`` trained with ``fit_defaults`` on ``demo_cohort("train")`` on
      first use (CPU, deterministic) and cached as ``demo_weights`` (plus both digests);
    * ``scorer="task"``: ``demo_task_model(weights="demo")`` over the columns ``demo_vocabulary``.

    ``demo_cohort``, ``demo_task_model`` and ``demo_vocabulary`` are ``"module:attribute"`` paths,
    imported only when the model or scorer is first needed.
    """

    demo_weights: ClassVar[str]
    demo_cohort: ClassVar[str]
    demo_task_model: ClassVar[str]
    demo_vocabulary: ClassVar[str]

    @classmethod
    def load_default_model(cls) -> DiffusionModel:
        """The cached demo denoiser (trained on the demo training split on first use)."""
        from c3_core.editors.diffusion_fit import FitSettings, cached_default_model

        config, cohort = cls.model_config, _resolve(cls.demo_cohort)
        if config is None:
            raise ValueError(f"{cls.id}: declares no model_config for its demo denoiser")
        return cached_default_model(
            cls.demo_weights, config, FitSettings(**cls.fit_defaults), lambda: cohort("train"),
            lambda b: encode_labels(b.label, config.n_labels, b.size),
        )  # fmt: skip

    def default_scorer(self) -> Scorer | None:
        """The demo task model's probabilities of ``demo_vocabulary``."""
        from c3_core.editors.scorer import TaskModelScorer

        vocabulary, model = _resolve(self.demo_vocabulary), _resolve(self.demo_task_model)
        return TaskModelScorer(model(weights="demo"), vocabulary=vocabulary)
