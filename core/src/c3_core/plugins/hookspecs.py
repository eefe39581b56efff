"""Hook specifications of the ``c3`` plugin system.

Every hook is a *registrar*: the host passes a typed registry and the plugin calls
``registry.add(id, "package.module:attr", summary, **meta)``. Targets are imported only when used,
so listing plugins imports no torch. Ids are ``"modality.name"``. A hook may take a subset of its
arguments (pluggy allows it), so arguments can be added later without breaking plugins.

The hook reference in ``docs/hooks.md`` is kept in step with this module by a test.
"""

from __future__ import annotations

from c3_core.domains import DomainRegistry
from c3_core.plugins.markers import hookspec
from c3_core.plugins.registry import Registry


@hookspec
def c3_register_domains(registry: DomainRegistry) -> None:
    """Register intensity domains: what a modality's pixel values mean.

    Call ``registry.add(domain)`` with each :class:`c3_core.domains.Domain` the plugin's
    operators, datasets and models use that core does not already share (counts,
    log_attenuation, hu, magnitude, linear_rgb, srgb, display). A ``Domain`` declares its name,
    meaning, value range (``low`` / ``high``, None = unbounded), how to show it (``display``:
    ``"module:attr"`` of an elementwise function to display brightness, imported only when an
    image is shown; ``display_span``: widest window) and, for colour, ``luma`` weights. Define the
    constants in a module that imports no torch. Called before the other registrar hooks; a name
    taken with another declaration is an error. Since: 0.1 (unreleased).
    """


@hookspec
def c3_register_operators(registry: Registry) -> None:
    """Register physics acquisition operators.

    Each target is an :class:`c3_core.operator.Operator` subclass. Meta keys: none required.
    Since: 0.1.
    """


@hookspec
def c3_register_editors(registry: Registry) -> None:
    """Register semantic editors (learned or mask-guided counterfactual generators).

    Each target is an :class:`c3_core.operator.Editor` subclass. Since: 0.1.
    """


@hookspec
def c3_register_datasets(registry: Registry) -> None:
    """Register dataset factories.

    Each target is a callable ``factory(*, source=None, split="test", **options)`` returning a
    ``torch.utils.data.Dataset`` of :class:`c3_core.batch.Sample`. Meta keys: ``task``,
    ``default_model``, ``default_neighbourhood`` (``"package:relative/path.toml"``),
    ``default_teacher`` and ``default_gate`` (optional: the validity gate's teacher and its
    ``c3 gate calibrate`` thresholds, ``"package:relative/path.json"``), ``accepts_path`` (bool:
    ``source`` may be a CSV or folder), ``demo`` (bool: the embedded demo cohort of its modality), ``experiment``
    (``"package.module:ATTR"`` of a :class:`c3_core.experiment_spec.ExperimentSpec`: the
    modality's held-out shifts, budgets and in-domain split). Since: 0.1.
    """


@hookspec
def c3_register_models(registry: Registry) -> None:
    """Register model factories.

    Each target is a callable ``factory(*, weights=None, device="cpu", **options)`` returning a
    :class:`c3_core.model.ModelBundle`. Meta keys: ``task``, ``architecture``, ``spatial_dims``
    (2 or 3: the input the conformance kit builds; default 2), ``demo`` (bool: the factory makes
    its own small reference weights for ``weights="demo"``). Since: 0.1.
    """


@hookspec
def c3_register_metrics(registry: Registry) -> None:
    """Register per-case score functions for shift-stable utility.

    Each target is a callable ``score(probabilities, target) -> Tensor(B,)`` in [0, 1], higher is
    better. Meta keys: ``task``. Since: 0.1.
    """
