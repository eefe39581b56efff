"""Conformance kit: the checks every plugin's contributions must pass.

Modelled on scikit-learn's ``parametrize_with_checks``: :func:`plugin_checks` yields named
checks for every contribution of a plugin module (operators, editors, datasets and their default
neighbourhoods, models, metrics, the meta keys of each registration), so a plugin's test is one
parametrized function and a third party's plugin passes the same checks as ours::

    from c3_core.testing import parametrize_with_checks
    import my_plugin.plugin

    @parametrize_with_checks(my_plugin.plugin, expected_failed_checks={
        "my.op::batch_invariant": "normalises by the batch maximum; fixed in 0.3",
    })
    def test_conformance(check):
        check()

An expected failure runs as a strict ``xfail``: reported as xfailed while it fails, and as a
failure (``XPASS(strict)``) once it passes, so a stale declaration is removed. A key that names
no check is an error.

``batch_factory(modality, domain, spatial_dims)`` may supply small test batches; otherwise the
kit takes two samples of the plugin's demo dataset for that modality (it must be quick).
:func:`editor_checks` runs the operator checks on editor classes handed over directly, with a
small test batch and a model built from small test weights (:func:`with_model`), so a plugin
needs no registration module or weights of its own to test an editor.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from c3_core._legacy_imports import warn_legacy_imports
from c3_core.batch import Batch, Sample, collate
from c3_core.experiment_spec import load_experiment_spec
from c3_core.model import ModelBundle
from c3_core.neighbourhood import (
    NeighbourhoodSpec,
    NeighbourhoodSpecError,
    OperatorFactory,
    Plan,
    PlannedStep,
    StepSpec,
    apply_plans,
    replay,
)
from c3_core.operator import Editor, Operator, SeverityError, SeveritySource
from c3_core.plugins.host import PluginHost
from c3_core.plugins.meta import meta_problems
from c3_core.plugins.registry import ID_PATTERN, Contribution, UnknownContributionError
from c3_core.provenance import params_from_dict, params_to_dict
from c3_core.seeding import generator_from_seed

__all__ = [
    "BatchFactory", "Check", "check_severity_source", "editor_checks", "parametrize_with_checks", "plugin_checks",
    "with_model",
]
__all__ += ["MIN_HELD_OUT_SHIFTS", "check_domain_registered", "check_experiment_spec"]
__all__ += ["check_declared_changes", "check_undeclared_untouched"]

BatchFactory = Callable[[str, str, int], Batch]
MAX_K = 1000  #: the most counterfactuals per case a default neighbourhood may ask for


@dataclass(frozen=True)
class Check:
    """One named conformance check; call it to run."""

    name: str
    contribution: str
    fn: Callable[[], None]

    def __call__(self) -> None:
        self.fn()

    def __str__(self) -> str:
        return f"{self.contribution}::{self.name}"


def plugin_checks(
    plugin: ModuleType,
    *,
    batch_factory: BatchFactory | None = None,
    name: str | None = None,
    internal: bool = False,
) -> list[Check]:
    """Every conformance check for every contribution of ``plugin`` (a hook module).

    Unless ``internal`` (a plugin released together with c3-core, which may import its internal
    modules), one more check warns (``DeprecationWarning``) for each import in the plugin's
    package of a c3-core module other than :mod:`c3_core.api` and :mod:`c3_core.testing`.
    """
    plugin_name = name or plugin.__name__
    host = PluginHost(autoload=False, modules={plugin_name: plugin}).load()
    record = host.plugins[0]
    if record.status != "loaded":
        raise AssertionError(f"plugin {plugin_name} failed to load: {record.error}")
    factory = batch_factory or _demo_batch_factory(host)
    checks: list[Check] = []
    for kind in ("operators", "editors"):
        for c in host.registry(kind):
            checks.extend(_operator_checks(c.id, c.kind, c.load, host.make_operator, factory))
            checks.append(Check("domain_registered", c.id, lambda c=c: check_domain_registered(host, c)))
    for c in host.registry("datasets"):
        checks.extend(_dataset_checks(c))
        checks.extend(_neighbourhood_checks(host, c))
        checks.extend(_experiment_checks(host, c))
    for c in host.registry("models"):
        checks.extend(_model_checks(c, factory))
    for c in host.registry("metrics"):
        checks.append(Check("resolves_callable", c.id, lambda c=c: _assert(callable(c.load()), f"{c.id} is not callable")))
    if not checks:
        raise AssertionError(f"plugin {plugin_name} registers nothing")
    for kind, registry in host.registries.items():
        for c in registry:
            checks.append(Check("meta_keys_declared", c.id, lambda c=c, kind=kind: _check_meta(kind, c)))
    if not internal:
        checks.append(Check("imports_author_api", plugin_name, lambda: _no_legacy_imports(plugin)))
    return checks


def _check_meta(kind: str, c: Contribution) -> None:
    problems = meta_problems(kind, c.meta)
    _assert(not problems, f"{c.id}: " + "; ".join(problems))


def _no_legacy_imports(plugin: ModuleType) -> None:
    """Passes, warning (DeprecationWarning) per import of a c3-core module beyond the author API."""
    warn_legacy_imports(plugin)


def _assert(cond: bool, message: str) -> None:
    if not cond:
        raise AssertionError(message)


def check_severity_source(cls: type[Operator[Any]]) -> None:
    """A physics operator (``kind == "operator"``) must say where its severity range comes from.

    Its ``severity.source`` must be a :class:`~c3_core.operator.SeveritySource` with the physical
    quantity and a reference or a derivation. Editors are not physics operators: they pass.
    """
    if getattr(cls, "kind", "operator") != "operator":
        return
    op_id = getattr(cls, "id", cls.__name__)
    src = getattr(cls.severity, "source", None)
    _assert(
        isinstance(src, SeveritySource),
        f"{op_id}: severity has no source; give Severity(..., source=SeveritySource(quantity, reference or "
        f"derivation, extreme_rationale)) saying where the range {cls.severity.identity:g} → "
        f"{cls.severity.extreme:g} {cls.severity.unit} comes from",
    )
    _assert(bool(src.quantity.strip()), f"{op_id}: the severity source needs the physical quantity")
    _assert(
        bool(src.reference.strip() or src.derivation.strip()),
        f"{op_id}: the severity source needs a reference or a derivation",
    )


# -- what an operator changes (Operator.changes) ---------------------------------------------
def _bit_identical(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    """Both None, or the same dtype, shape and bytes (NaN payloads included)."""
    if a is None or b is None:
        return a is b
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    return torch.equal(a.detach().cpu().reshape(-1).view(torch.uint8), b.detach().cpu().reshape(-1).view(torch.uint8))


def _with_truth(op: Operator[Any], batch: Batch) -> Batch:
    """``batch`` with a mask and a label to watch (synthetic where it has none: a centred square,
    alternating multi-label targets) and, for a mask-guided editor, a lesion in case 0."""
    from c3_core.editors.interventions import MaskGuidedEditor

    spatial = batch.spatial_shape
    if batch.mask is None:
        grid = torch.zeros((batch.size, 1, *spatial), device=batch.device)
        grid[(slice(None), slice(None), *(slice(s // 4, 3 * s // 4) for s in spatial))] = 1.0
        batch = batch.replace(mask=grid)
    if batch.label is None:
        batch = batch.replace(label=(torch.arange(batch.size * 5, device=batch.device).view(-1, 5) % 2).float())
    if isinstance(op, MaskGuidedEditor) and batch.mask.shape[1] > max(op.lesion_channels) and not bool(op.lesion_mask(batch).any()):
        mask = batch.mask.clone()
        mask[(0, op.lesion_channels[0], *(slice(s // 2 - max(1, s // 16), s // 2 + max(1, s // 16)) for s in spatial))] = 1.0
        batch = batch.replace(mask=mask)
    return batch


def _one_step_plans(op: Operator[Any], batch: Batch, params: list[Any], severity: float) -> list[Plan]:
    return [Plan(batch.exam_ids[i], 0, 0, 0, (PlannedStep(op, severity, params[i], {}),)) for i in range(batch.size)]


def check_undeclared_untouched(op: Operator[Any], batch: Batch, seed: int = 11) -> None:
    """What ``op`` does not declare in ``changes`` comes back bit-identical: the label always, the
    mask unless ``op`` is spatial (then it moves with the image) — from ``apply`` and from
    :func:`~c3_core.neighbourhood.apply_plans`."""
    batch = _with_truth(op, batch)
    g = generator_from_seed(seed)
    sev = op.severity.extreme
    params = [op.sample_params(batch.case_info(i), g, sev) for i in range(batch.size)]
    out = op.apply(batch, params)
    cf, _ = apply_plans(batch, _one_step_plans(op, batch, params, sev))
    for name, result in (("apply", out), ("apply_plans", cf)):
        if "label" not in op.changes:
            _assert(_bit_identical(result.label, batch.label), f"{op.id}: {name} changed the label, which it does not declare in changes")
        if "mask" not in op.changes and not op.spatial:
            _assert(_bit_identical(result.mask, batch.mask), f"{op.id}: {name} changed the mask, which it does not declare in changes")


def check_declared_changes(op: Operator[Any], batch: Batch, seed: int = 13) -> None:
    """A declared ``"mask"`` / ``"label"`` comes back describing the edited image: the same shape
    and dtype, deterministic, carried by :func:`~c3_core.neighbourhood.apply_plans` as returned
    (None as unknown), mask values in [0, 1] or NaN (unknown); and, for the shipped editor
    families, consistent with the edit: lesion removed — the lesion channels are empty inside the
    removed region; lesion only — nothing is left outside the kept region; structure area — the
    structures' channels are the frozen segmentor's masks of the edited image, the others unknown;
    structure volume — the same inside the edit region, and image and mask untouched outside it;
    concept insert/delete — the finding's label column moved as declared, nothing else did."""
    if not op.changes & {"mask", "label"}:
        return
    batch = _with_truth(op, batch)
    g = generator_from_seed(seed)
    sev = op.severity.extreme
    params = [op.sample_params(batch.case_info(i), g, sev) for i in range(batch.size)]
    out, again = op.apply(batch, params), op.apply(batch, params)
    cf, _ = apply_plans(batch, _one_step_plans(op, batch, params, sev))
    from c3_core.truth import unknown_like

    for name in sorted(op.changes & {"mask", "label"}):
        before, after = getattr(batch, name), getattr(out, name)
        if after is not None:
            _assert(after.shape == before.shape and after.dtype == before.dtype, f"{op.id}: the returned {name} changed shape or dtype")
        _assert(_bit_identical(after, getattr(again, name)), f"{op.id}: the same params gave a different {name}")
        carried = unknown_like(before) if after is None else after
        _assert(_bit_identical(getattr(cf, name), carried), f"{op.id}: apply_plans does not carry the {name} the edit returned")
    if "mask" in op.changes and out.mask is not None:
        m = out.mask
        _assert(bool((torch.isnan(m) | ((m >= 0) & (m <= 1))).all()), f"{op.id}: mask values must be in [0, 1] or NaN (unknown)")
    _check_family(op, batch, out, params)


def _check_family(op: Operator[Any], batch: Batch, out: Batch, params: list[Any]) -> None:
    """The declared effect of the shipped editor families, checked on the returned batch."""
    from c3_core.editors.concepts import ConceptEditor
    from c3_core.editors.interventions import LesionOnly, LesionRemoved
    from c3_core.editors.structure import StructureAreaEditor
    from c3_core.editors.volume_structure_editor import VolumeStructureEditor

    if isinstance(op, LesionRemoved | LesionOnly):
        regions = torch.stack([op.edit_region(batch, i, p.margin_mm) for i, p in enumerate(params)]).unsqueeze(1)
        _assert(bool(regions.any()), f"{op.id}: the kit's batch has no lesion to edit")
        if isinstance(op, LesionRemoved):
            lesion = out.mask[:, list(op.lesion_channels)]  # type: ignore[index]
            _assert(bool((lesion.masked_select(regions.expand_as(lesion)) == 0).all()),
                    f"{op.id}: the returned lesion mask is not empty inside the removed region")  # fmt: skip
        else:
            _assert(bool((out.mask.masked_select(~regions.expand_as(out.mask)) == 0).all()),  # type: ignore[union-attr]
                    f"{op.id}: the returned mask keeps structures outside the kept region")  # fmt: skip
    elif isinstance(op, VolumeStructureEditor):
        _check_volume_structure(op, batch, out, params)
    elif isinstance(op, StructureAreaEditor):
        model = op.model(batch.device)
        channels = op.structure_channels(model, batch.mask.shape[1])  # type: ignore[union-attr]
        edited = torch.tensor([p.ratio != 1.0 for p in params], device=batch.device)
        _assert(bool(edited.any()), f"{op.id}: the kit's params edit no case")
        seg = op.segmented_mask(out).to(out.mask.dtype)  # type: ignore[union-attr]
        others = [c for c in range(out.mask.shape[1]) if c not in channels]  # type: ignore[union-attr]
        for i in range(batch.size):
            if bool(edited[i]):
                _assert(_bit_identical(out.mask[i, channels], seg[i]),  # type: ignore[index]
                        f"{op.id}: case {i}: the returned mask is not the frozen segmentor's mask of the edited image")  # fmt: skip
                _assert(bool(out.mask[i, others].isnan().all()), f"{op.id}: case {i}: unsegmented channels must be unknown (NaN)")  # type: ignore[index]
            else:
                _assert(_bit_identical(out.mask[i], batch.mask[i]), f"{op.id}: case {i} was not edited but its mask changed")  # type: ignore[index]
    elif isinstance(op, ConceptEditor):
        index = op.model(batch.device).concept(op.concept)[1].label_index
        value = 1.0 if op.sign > 0 else 0.0
        for i, p in enumerate(params):
            row, was = out.label[i], batch.label[i]  # type: ignore[index]
            others = [c for c in range(row.shape[0]) if c != index]
            _assert(_bit_identical(row[others], was[others]), f"{op.id}: case {i}: label columns other than {index} moved")
            if p.alpha > 0:
                _assert(float(row[index]) == value, f"{op.id}: case {i}: label column {index} is {float(row[index])}, declared {value}")
            else:
                _assert(_bit_identical(row, was), f"{op.id}: case {i} was not edited but its label changed")
            if "mask" in op.changes and p.alpha > 0:
                _assert(bool(out.mask[i, list(op.finding_mask_channels)].isnan().all()),  # type: ignore[index]
                        f"{op.id}: case {i}: the findings' mask channels must be unknown after the edit")  # fmt: skip


def _check_volume_structure(op: Any, batch: Batch, out: Batch, params: list[Any]) -> None:
    """Structure volume: on an edited case the image changes only inside the edit region, where the
    structure's channel is the frozen segmentor's mask of the edited volume and the other channels
    are unknown; outside it mask and image are the input's; an unedited case is untouched."""
    edited = [p.ratio != 1.0 for p in params]
    _assert(any(edited), f"{op.id}: the kit's params edit no case")
    region = op.edit_region(batch)
    seg = op.segmented_mask(out).to(out.mask.dtype)  # type: ignore[union-attr]
    channels = list(op.mask_channels)
    others = [c for c in range(out.mask.shape[1]) if c not in channels]  # type: ignore[union-attr]
    for i in range(batch.size):
        m, was = out.mask[i], batch.mask[i]  # type: ignore[index]
        if not edited[i]:
            _assert(_bit_identical(m, was) and _bit_identical(out.image[i], batch.image[i]), f"{op.id}: case {i} was not edited but changed")
            continue
        r = region[i, 0]
        _assert(bool((out.image[i][:, ~r] == batch.image[i][:, ~r]).all()), f"{op.id}: case {i}: the image changed outside the edit region")
        _assert(_bit_identical(m[:, ~r], was[:, ~r]), f"{op.id}: case {i}: the mask changed outside the edit region")
        _assert(_bit_identical(m[channels][:, r], seg[i][:, r]),
                f"{op.id}: case {i}: inside the edit region the mask is not the frozen segmentor's mask of the edited volume")  # fmt: skip
        _assert(bool(m[others][:, r].isnan().all()), f"{op.id}: case {i}: other channels must be unknown (NaN) inside the edit region")


def _demo_batch_factory(host: PluginHost) -> BatchFactory:
    cache: dict[tuple[str, str, int], Batch] = {}

    def factory(modality: str, domain: str, spatial_dims: int) -> Batch:
        key = (modality, domain, spatial_dims)
        if key not in cache:
            demo = host.demo_dataset(modality).load()
            ds = demo(split="test")
            samples: list[Sample] = [ds[i] for i in range(min(2, len(ds)))]
            batch = collate(samples)
            if batch.domain.value != domain or batch.spatial_dims != spatial_dims:
                raise AssertionError(
                    f"the {modality} demo dataset gives {batch.domain.value} {batch.spatial_dims}-D images; "
                    f"pass batch_factory= to test operators on {domain} {spatial_dims}-D"
                )
            cache[key] = batch
        return cache[key]

    return factory


# -- operators -----------------------------------------------------------------------------
def _operator_checks(
    op_id: str,
    kind: str,
    load: Callable[[], Any],
    make: OperatorFactory,
    factory: BatchFactory,
    options: Mapping[str, Any] | None = None,
) -> list[Check]:
    """The checks of one operator or editor class; ``options`` are its constructor keywords."""
    opts = dict(options or {})

    def op_cls() -> type[Operator[Any]]:
        return load()

    def batch_for(op: Operator[Any], dims: int) -> Batch:
        return factory(op.modality, op.domain.value, dims)

    def sample(op: Operator[Any], batch: Batch, seed: int, severity: float | None = None) -> list[Any]:
        sev = op.severity.extreme if severity is None else severity
        g = generator_from_seed(seed)
        return [op.sample_params(batch.case_info(i), g, sev) for i in range(batch.size)]

    def check_declares() -> None:
        cls = op_cls()
        base = Editor if kind == "editors" else Operator
        _assert(isinstance(cls, type) and issubclass(cls, base), f"{op_id}: target is not a {base.__name__} subclass")
        _assert(cls.id == op_id, f"{op_id}: class id is {cls.id!r}")
        _assert(bool(ID_PATTERN.match(cls.id)) and cls.id.startswith(cls.modality + "."), f"{op_id}: id must be '{cls.modality}.name'")
        _assert(dataclasses.is_dataclass(cls.params_type), f"{op_id}: params_type must be a dataclass")
        _assert(cls.params_type.__dataclass_params__.frozen, f"{op_id}: params_type must be frozen")
        _assert(bool(cls.summary), f"{op_id}: needs a one-line summary")
        d = cls.describe()
        _assert(d["severity"]["unit"] != "", f"{op_id}: severity needs a unit")

    def per_dims(fn: Callable[[Operator[Any], Batch], None]) -> Callable[[], None]:
        def run() -> None:
            op = op_cls()(**opts)
            tried: list[str] = []
            ran = 0
            for dims in op.spatial_dims:
                try:
                    batch = batch_for(op, dims)
                except AssertionError as exc:
                    tried.append(str(exc))
                    continue
                fn(op, batch)
                ran += 1
            _assert(ran > 0, f"{op.id}: no test batch available: {'; '.join(tried)}")

        return run

    def check_shape_dtype_device(op: Operator[Any], batch: Batch) -> None:
        out = op.apply(batch, sample(op, batch, 0))
        _assert(out.image.shape == batch.image.shape, f"{op.id}: shape {tuple(out.image.shape)} != {tuple(batch.image.shape)}")
        _assert(out.image.dtype == batch.image.dtype, f"{op.id}: dtype changed to {out.image.dtype}")
        _assert(out.image.device == batch.image.device, f"{op.id}: device changed")
        _assert(bool(torch.isfinite(out.image).all()), f"{op.id}: produced NaN or Inf")
        _assert(out.domain == batch.domain, f"{op.id}: domain changed")

    def check_deterministic(op: Operator[Any], batch: Batch) -> None:
        p1, p2 = sample(op, batch, 1234), sample(op, batch, 1234)
        _assert(p1 == p2, f"{op.id}: same generator seed gave different params")
        a, b = op.apply(batch, p1), op.apply(batch, p2)
        _assert(torch.equal(a.image, b.image), f"{op.id}: same params gave different bytes")

    def check_stream_sampling(op: Operator[Any], batch: Batch) -> None:
        """An operator declaring ``stream_sampling`` draws from the planner's counter-based stream:
        the same stream gives the same params, torch's global generator is untouched, and the
        params apply (finite output)."""
        if not op.stream_sampling:
            return
        from c3_core.streams import StepStream, stream_key

        def draw(j: int) -> list[Any]:
            sev = op.severity.extreme
            return [op.sample_params(batch.case_info(i), StepStream(stream_key(9, batch.exam_ids[i]), j, 1, []), sev)
                    for i in range(batch.size)]

        state = torch.get_rng_state()
        first = draw(0)
        _assert(torch.equal(state, torch.get_rng_state()), f"{op.id}: _sample drew from torch's global generator")
        _assert(first == draw(0), f"{op.id}: the same stream gave different params")
        out = op.apply(batch, first)
        _assert(bool(torch.isfinite(out.image).all()), f"{op.id}: params drawn from a stream produced NaN or Inf")

    def check_replay(op: Operator[Any], batch: Batch) -> None:
        one = batch.select([0])
        params = sample(op, one, 7)
        plan = Plan(one.exam_ids[0], 0, 0, 7, (PlannedStep(op, op.severity.extreme, params[0], opts),))
        direct, _ = apply_plans(one, [plan])
        again = replay(one, plan.provenance(), make)
        _assert(torch.equal(direct.image, again.image), f"{op.id}: replay from provenance is not bit-identical")
        rebuilt = params_from_dict(op.params_type, params_to_dict(params[0]))
        _assert(rebuilt == params[0], f"{op.id}: params do not round-trip through provenance")

    def check_masks(op: Operator[Any], batch: Batch) -> None:
        if batch.mask is None:
            spatial = batch.image.shape[2:]
            grid = torch.zeros((batch.size, 1, *spatial), device=batch.device)
            sl = tuple(slice(s // 4, 3 * s // 4) for s in spatial)
            grid[(slice(None), slice(None), *sl)] = 1.0
            batch = batch.replace(mask=grid)
        params = sample(op, batch, 3)
        out = op.apply(batch, params)
        if "mask" in op.changes:  # the edit restates the mask: see check_declared_changes
            return
        if not op.spatial:
            _assert(out.mask is not None and torch.equal(out.mask, batch.mask), f"{op.id}: intensity operator changed the mask")
            return
        # spatial: warp the mask as if it were the image; the two warps must agree
        probe = batch.replace(image=batch.mask[:, :1].expand_as(batch.image).contiguous().to(batch.image.dtype))
        moved = op.apply(probe, params)
        a = moved.image[:, :1] > 0.5
        b = out.mask[:, :1] > 0.5
        inter = (a & b).sum().item()
        union = (a | b).sum().item()
        _assert(union == 0 or inter / union >= 0.8, f"{op.id}: mask does not move with the image (IoU {inter / max(union, 1):.2f})")

    def check_batch_invariant(op: Operator[Any], batch: Batch) -> None:
        params = sample(op, batch, 5)
        whole = op.apply(batch, params).image
        for i in range(batch.size):
            single = op.apply(batch.select([i]), params[i : i + 1]).image[0]
            torch.testing.assert_close(whole[i], single, rtol=1e-5, atol=1e-5, msg=f"{op.id}: result depends on the batch")

    def check_rejects_wrong_domain(op: Operator[Any], batch: Batch) -> None:
        from c3_core.domains import IntensityDomain

        other = next(d for d in IntensityDomain if d != batch.domain)
        bad = batch.replace(domain=other)
        try:
            op.apply(bad, sample(op, batch, 0))
        except ValueError as exc:
            _assert(op.id in str(exc), f"{op.id}: the domain error should name the operator")
            return
        raise AssertionError(f"{op.id}: accepted a batch in the wrong intensity domain")

    checks = [
        Check("declares_metadata", op_id, check_declares),
        Check("keeps_shape_dtype_device", op_id, per_dims(check_shape_dtype_device)),
        Check("deterministic_under_seed", op_id, per_dims(check_deterministic)),
        Check("samples_from_streams", op_id, per_dims(check_stream_sampling)),
        Check("replays_from_provenance", op_id, per_dims(check_replay)),
        Check("masks_consistent", op_id, per_dims(check_masks)),
        Check("undeclared_untouched", op_id, per_dims(check_undeclared_untouched)),
        Check("declared_changes_consistent", op_id, per_dims(check_declared_changes)),
        Check("batch_invariant", op_id, per_dims(check_batch_invariant)),
        Check("rejects_wrong_domain", op_id, per_dims(check_rejects_wrong_domain)),
    ]
    if kind == "operators":  # physics operators: the severity range must have a source
        checks.append(Check("severity_has_source", op_id, lambda: check_severity_source(op_cls())))
    return checks


# -- datasets and models -------------------------------------------------------------------
def _dataset_checks(c: Contribution) -> Iterator[Check]:
    def check_samples() -> None:
        if c.meta.get("accepts_path") and not c.meta.get("demo"):
            _assert(callable(c.load()), f"{c.id}: target is not callable")
            return
        ds = c.load()(split="test")
        _assert(len(ds) > 0, f"{c.id}: empty dataset")
        samples = [ds[i] for i in range(min(2, len(ds)))]
        for s in samples:
            _assert(isinstance(s, Sample), f"{c.id}: items must be c3_core.batch.Sample")
            _assert(s.modality == c.modality, f"{c.id}: sample modality {s.modality!r}")
            _assert(bool(torch.isfinite(s.image).all()), f"{c.id}: non-finite image values")
        batch = collate(samples)
        _assert(batch.exam_ids[0] != (batch.exam_ids[1] if batch.size > 1 else None), f"{c.id}: exam ids must be unique")
        ds2 = c.load()(split="test")
        _assert(torch.equal(ds2[0].image, samples[0].image), f"{c.id}: the dataset is not deterministic")
        for key in ("task",):
            _assert(key in c.meta, f"{c.id}: registration needs meta {key!r}")

    yield Check("yields_valid_samples", c.id, check_samples)


def _model_checks(c: Contribution, factory: BatchFactory) -> Iterator[Check]:
    def check_forward() -> None:
        bundle = c.load()(weights=None, device="cpu")
        _assert(isinstance(bundle, ModelBundle), f"{c.id}: factory must return a ModelBundle")
        dims = int(c.meta.get("spatial_dims", 2))
        batch = factory(c.modality, bundle.input_domain.value, dims)
        logits = bundle.logits(batch.image)
        _assert(logits.shape[0] == batch.size, f"{c.id}: logits batch axis {logits.shape[0]} != {batch.size}")
        if bundle.task == "segmentation":
            _assert(logits.shape[2:] == batch.image.shape[2:], f"{c.id}: segmentation logits must match the image grid")
        else:
            _assert(logits.shape[1] == len(bundle.class_names), f"{c.id}: {logits.shape[1]} outputs for {len(bundle.class_names)} classes")
        _assert(bool(torch.isfinite(logits).all()), f"{c.id}: non-finite logits")

    yield Check("forward_on_tiny_batch", c.id, check_forward)


# -- default neighbourhoods ----------------------------------------------------------------
def _neighbourhood_checks(host: PluginHost, c: Contribution) -> Iterator[Check]:
    """A dataset's ``default_neighbourhood``: it parses, K is sane, every step names an operator of
    the dataset's modality with options it takes and severities inside its declared range, and
    every composition's steps can follow one another."""
    ref = c.meta.get("default_neighbourhood")
    if not isinstance(ref, str):
        return

    def check() -> None:
        spec = _read_spec(c.id, ref)
        _assert(1 <= spec.k <= MAX_K, f"{c.id}: {spec.source}: k = {spec.k} counterfactuals per case; keep k in 1..{MAX_K}")
        for i, member in enumerate(spec.members):
            where = f"{c.id}: {spec.source}: members[{i}]"
            chain = [_step_operator(host, c.modality, f"{where}.steps[{j}] ({s.op})", s) for j, s in enumerate(member.steps)]
            _check_chain(where, chain)

    yield Check("default_neighbourhood_valid", c.id, check)


def _read_spec(dataset_id: str, ref: str) -> NeighbourhoodSpec:
    """``"package:relative/path.toml"`` (package data) or a file path, parsed."""
    try:
        if ":" in ref and not Path(ref).exists():
            package, rel = ref.split(":", 1)
            text = importlib.resources.files(package).joinpath(rel).read_text(encoding="utf-8")
        else:
            text = Path(ref).read_text(encoding="utf-8")
    except (OSError, ModuleNotFoundError) as exc:
        raise AssertionError(f"{dataset_id}: cannot read default_neighbourhood {ref!r} ({exc})") from None
    try:
        return NeighbourhoodSpec.from_toml_string(text, source=ref)
    except NeighbourhoodSpecError as exc:
        raise AssertionError(f"{dataset_id}: {exc}") from None


def _step_operator(host: PluginHost, modality: str, where: str, step: StepSpec) -> Operator[Any]:
    try:
        op = host.make_operator(step.op, step.options)
    except LookupError as exc:
        raise AssertionError(f"{where}: {exc.args[0] if exc.args else exc}") from None
    except TypeError as exc:
        raise AssertionError(f"{where}: options {dict(step.options)} not taken ({exc})") from None
    _assert(op.modality == modality, f"{where}: {op.id} is a {op.modality} operator in a {modality} neighbourhood")
    values = step.levels if step.levels else (() if step.low is None else (step.low, step.high))
    for value in values:
        try:
            op.severity.check(value, where)  # type: ignore[arg-type]
        except SeverityError as exc:
            raise AssertionError(str(exc)) from None
    return op


def _check_chain(where: str, chain: list[Operator[Any]]) -> None:
    """The steps of a composition take what the step before returns: one domain, a shared rank and channel count."""
    steps = ", ".join(f"{op.id} ({op.domain.value}, {'/'.join(map(str, op.spatial_dims))}-D)" for op in chain)
    _assert(len({op.domain for op in chain}) == 1, f"{where}: the steps of a composition must share one intensity domain: {steps}")
    dims = set(chain[0].spatial_dims).intersection(*(op.spatial_dims for op in chain[1:]))
    _assert(bool(dims), f"{where}: no image rank every step supports: {steps}")
    channels = [set(op.channels) for op in chain if op.channels is not None]
    _assert(not channels or bool(set.intersection(*channels)), f"{where}: no channel count every step takes: {steps}")


# -- intensity domains and experiment declarations -----------------------------------------
MIN_HELD_OUT_SHIFTS = 2  #: held-out shifts a modality's experiment declaration gives at least


def check_domain_registered(host: PluginHost, c: Contribution) -> None:
    """An operator's or editor's ``domain`` is a shared domain or one the plugin registers
    (``c3_register_domains``) with the same declaration."""
    cls = c.load()
    try:
        host.domain(cls.domain)
    except ValueError as exc:
        raise AssertionError(f"{c.id}: {exc}; register it with c3_register_domains") from None


def check_experiment_spec(host: PluginHost, dataset: Contribution) -> None:
    """A dataset's ``experiment`` declaration (:class:`~c3_core.experiment_spec.ExperimentSpec`):
    it loads, belongs to the dataset's modality, gives at least :data:`MIN_HELD_OUT_SHIFTS`
    held-out shifts whose family members and steps are registered operators of that modality (the
    steps taking their options, in one intensity domain) at severities inside each operator's
    admissible range, and its in-domain split is a non-empty split of the dataset. A dataset
    without the meta key passes."""
    ref = dataset.meta.get("experiment")
    if ref is None:
        return
    try:
        spec = load_experiment_spec(ref)
    except Exception as exc:  # noqa: BLE001 - any failure to load is the finding
        raise AssertionError(f"{dataset.id}: experiment={ref!r} cannot be loaded ({type(exc).__name__}: {exc})") from None
    modality = dataset.modality
    _assert(spec.modality == modality, f"{dataset.id}: experiment={ref!r} declares {spec.modality} shifts, not {modality}")
    _assert(
        len(spec.shifts) >= MIN_HELD_OUT_SHIFTS,
        f"{dataset.id}: declare at least {MIN_HELD_OUT_SHIFTS} held-out shifts, got {len(spec.shifts)}",
    )
    operators = host.registry("operators")
    for shift in spec.shifts:
        where = f"{dataset.id}: held-out shift {shift.name!r}"
        for op_id in shift.family:
            _assert(
                op_id in operators and operators.get(op_id).modality == modality,
                f"{where}: family member {op_id!r} is not a registered {modality} operator "
                f"(known: {', '.join(c.id for c in operators.for_modality(modality)) or 'none'})",
            )
        domains = set()
        for i, step in enumerate(shift.steps):
            at = f"{where}: steps[{i}] ({step.op})"
            try:
                op = host.make_operator(step.op, step.options)
            except TypeError as exc:
                raise AssertionError(f"{at}: options {dict(step.options)} not taken ({exc})") from None
            try:
                op.severity.check(step.severity, at)
            except SeverityError as exc:
                raise AssertionError(str(exc)) from None
            domains.add(op.domain)
        _assert(len(domains) == 1, f"{where}: the steps must share one intensity domain, got {sorted(domains)}")
    try:
        n = len(dataset.load()(split=spec.in_domain_split))
    except Exception as exc:  # noqa: BLE001 - the split is unusable, whatever the reason
        raise AssertionError(f"{dataset.id}: in_domain_split {spec.in_domain_split!r} fails ({type(exc).__name__}: {exc})") from None
    _assert(n > 0, f"{dataset.id}: in_domain_split {spec.in_domain_split!r} is empty")


def _experiment_checks(host: PluginHost, c: Contribution) -> Iterator[Check]:
    if c.meta.get("experiment") is not None:
        yield Check("experiment_declaration_valid", c.id, lambda: check_experiment_spec(host, c))


# -- editors handed over directly ----------------------------------------------------------
_MODEL_LOADERS = ("load_model", "load_default_model")


def with_model(editor: type[Editor[Any]], model: Callable[[], Any]) -> type[Editor[Any]]:
    """A subclass of ``editor`` whose model loader returns ``model()`` instead of the plugin's model.

    The loader is the editor family's class method (``load_model`` for structure and concept
    editors, ``load_default_model`` for diffusion editors); ``model`` builds the model from small
    test weights (called each time the editor loads it: cache inside it if that is slow).
    """
    loader = next((n for n in _MODEL_LOADERS if callable(getattr(editor, n, None))), None)
    if loader is None:
        raise TypeError(f"{editor.__name__} loads no model (it has no {' or '.join(_MODEL_LOADERS)})")

    def load(cls: type) -> Any:
        return model()

    namespace = {loader: classmethod(load), "__module__": editor.__module__, "__doc__": editor.__doc__}
    return type(editor)(editor.__name__, (editor,), namespace)


def editor_checks(
    editors: Iterable[type[Editor[Any]]],
    *,
    batch: Batch | Callable[[], Batch],
    model: Callable[[], Any] | None = None,
    options: Mapping[str, Any] | None = None,
) -> list[Check]:
    """The operator checks for editor classes handed over directly (no plugin module needed).

    ``batch`` is the small test batch (or a function returning it, called when a check first runs;
    checks for a rank or domain it is not in are skipped); ``model`` builds the model the editors
    load, from small test weights (see :func:`with_model`); ``options`` are constructor keywords
    for every editor, recorded in provenance like a neighbourhood step's (e.g. ``{"scorer": "none"}``).
    """
    classes = [editor if model is None else with_model(editor, model) for editor in editors]
    by_id = {cls.id: cls for cls in classes}

    def make(op_id: str, opts: Mapping[str, Any] | None = None) -> Operator[Any]:
        if op_id not in by_id:
            raise UnknownContributionError(f"unknown editor id {op_id!r} (handed: {', '.join(sorted(by_id))})")
        return by_id[op_id](**dict(opts or {}))

    factory = _one_batch(batch)
    checks: list[Check] = []
    for cls in classes:
        checks.extend(_operator_checks(cls.id, "editors", lambda cls=cls: cls, make, factory, options))
    return checks


def _one_batch(batch: Batch | Callable[[], Batch]) -> BatchFactory:
    made: list[Batch] = []

    def factory(modality: str, domain: str, spatial_dims: int) -> Batch:
        if not made:
            made.append(batch if isinstance(batch, Batch) else batch())
        b = made[0]
        if (b.modality, b.domain.value, b.spatial_dims) != (modality, domain, spatial_dims):
            raise AssertionError(
                f"the test batch is {b.modality} {b.domain.value} {b.spatial_dims}-D, not {modality} {domain} {spatial_dims}-D"
            )
        return b

    return factory


# -- pytest ----------------------------------------------------------------------------------
def parametrize_with_checks(
    checks: ModuleType | Iterable[Check],
    *,
    expected_failed_checks: Mapping[str, str] | None = None,
    batch_factory: BatchFactory | None = None,
    internal: bool = False,
) -> Any:
    """A ``pytest.mark.parametrize("check", ...)`` decorator over the kit's checks.

    ``checks`` is a plugin's hook module (then ``batch_factory`` and ``internal`` go to
    :func:`plugin_checks`) or checks already made (e.g. by :func:`editor_checks`).
    ``expected_failed_checks`` maps a check's name, ``"contribution::check"`` as the test ids
    show it, to the reason it fails: such a check runs as a strict ``xfail``, reported as xfailed
    while it fails and as a failure (``XPASS(strict)``) once it passes.
    """
    import pytest  # a test-time dependency: only this decorator needs it

    if isinstance(checks, ModuleType):
        items = plugin_checks(checks, batch_factory=batch_factory, internal=internal)
    elif batch_factory is not None or internal:
        raise TypeError("batch_factory and internal apply to a plugin module, not to checks already made")
    else:
        items = list(checks)
    expected = dict(expected_failed_checks or {})
    names = {str(c) for c in items}
    unknown = sorted(set(expected) - names)
    if unknown:
        raise ValueError(f"expected_failed_checks names no check: {', '.join(unknown)} (ids look like {next(iter(sorted(names)), '')!r})")
    blank = sorted(k for k, reason in expected.items() if not str(reason).strip())
    if blank:
        raise ValueError(f"expected_failed_checks needs a reason for: {', '.join(blank)}")
    params = [
        pytest.param(c, id=str(c), marks=pytest.mark.xfail(reason=expected[str(c)], strict=True))
        if str(c) in expected
        else pytest.param(c, id=str(c))
        for c in items
    ]
    return pytest.mark.parametrize("check", params)


def check_shipped_weights(package: str, factories: Mapping[str, Callable[..., ModelBundle]], cache: Path) -> None:
    """Raise AssertionError unless ``package`` ships every weights file named in ``factories``
    (name -> model factory) with a matching SHA-256 in ``weights/weights.json``, and each factory's
    ``weights="demo"`` loads exactly that file into an empty cache ``cache`` without training
    (training would write into the cache). Sets ``C3_CACHE_DIR`` for the call and restores it."""
    import hashlib
    import json
    import os

    from c3_core.cache import ENV_CACHE, ENV_IGNORE_SHIPPED, shipped_dir

    folder = shipped_dir(package)
    _assert(folder is not None, f"{package} ships no weights/weights.json")
    manifest = json.loads((folder / "weights.json").read_text(encoding="utf-8"))["weights"]  # type: ignore[operator]
    saved = {k: os.environ.get(k) for k in (ENV_CACHE, ENV_IGNORE_SHIPPED)}
    os.environ[ENV_CACHE] = str(cache)
    os.environ.pop(ENV_IGNORE_SHIPPED, None)
    try:
        for name, factory in factories.items():
            _assert(name in manifest, f"{package}: {name} is not in weights/weights.json")
            entry = manifest[name]
            data = (folder / entry["file"]).read_bytes()  # type: ignore[operator]
            _assert(len(data) == entry["bytes"] and hashlib.sha256(data).hexdigest() == entry["sha256"],
                    f"{package}: {entry['file']} does not match its size and SHA-256 in weights.json")
            _assert(str(entry.get("command", "")).startswith("python scripts/make_demo_weights.py"),
                    f"{package}: {name} does not say which command made it")
            bundle = factory(weights="demo")
            state = {k: v.detach().cpu().contiguous() for k, v in bundle.network.state_dict().items()}
            from safetensors.torch import load_file

            shipped = load_file(str(folder / entry["file"]))  # type: ignore[operator]
            _assert(bool(bundle.trained) and set(state) == set(shipped) and all(torch.equal(state[k], shipped[k]) for k in shipped),
                    f"{package}: {name} did not load the shipped file")
            _assert(not (cache / "weights").exists(), f"{package}: loading {name} trained weights into the cache")
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
