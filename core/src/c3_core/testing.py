"""Conformance kit: the checks every plugin's contributions must pass.

Modelled on scikit-learn's ``parametrize_with_checks``: :func:`plugin_checks` yields named
checks for every contribution of a plugin module, so a plugin's test is one parametrized
function and a third party's plugin passes the same checks as ours::

    import pytest
    from c3_core.testing import plugin_checks
    import my_plugin.plugin

    @pytest.mark.parametrize("check", plugin_checks(my_plugin.plugin), ids=str)
    def test_conformance(check):
        check()

``batch_factory(modality, domain, spatial_dims)`` may supply small test batches; otherwise the
kit takes two samples of the plugin's demo dataset for that modality (it must be quick).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch

from c3_core.batch import Batch, Sample, collate
from c3_core.model import ModelBundle
from c3_core.neighbourhood import Plan, PlannedStep, apply_plans, replay
from c3_core.operator import Editor, Operator, SeveritySource
from c3_core.plugins.host import PluginHost
from c3_core.plugins.registry import ID_PATTERN, Contribution
from c3_core.provenance import params_from_dict, params_to_dict
from c3_core.seeding import generator_from_seed

BatchFactory = Callable[[str, str, int], Batch]


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
) -> list[Check]:
    """Every conformance check for every contribution of ``plugin`` (a hook module)."""
    plugin_name = name or plugin.__name__
    host = PluginHost(autoload=False, modules={plugin_name: plugin}).load()
    record = host.plugins[0]
    if record.status != "loaded":
        raise AssertionError(f"plugin {plugin_name} failed to load: {record.error}")
    factory = batch_factory or _demo_batch_factory(host)
    checks: list[Check] = []
    for kind in ("operators", "editors"):
        for c in host.registry(kind):
            checks.extend(_operator_checks(host, c, factory))
    for c in host.registry("datasets"):
        checks.extend(_dataset_checks(c))
    for c in host.registry("models"):
        checks.extend(_model_checks(c, factory))
    for c in host.registry("metrics"):
        checks.append(Check("resolves_callable", c.id, lambda c=c: _assert(callable(c.load()), f"{c.id} is not callable")))
    if not checks:
        raise AssertionError(f"plugin {plugin_name} registers nothing")
    return checks


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
def _operator_checks(host: PluginHost, c: Contribution, factory: BatchFactory) -> list[Check]:
    def op_cls() -> type[Operator[Any]]:
        return c.load()

    def batch_for(op: Operator[Any], dims: int) -> Batch:
        return factory(op.modality, op.domain.value, dims)

    def sample(op: Operator[Any], batch: Batch, seed: int, severity: float | None = None) -> list[Any]:
        sev = op.severity.extreme if severity is None else severity
        g = generator_from_seed(seed)
        return [op.sample_params(batch.case_info(i), g, sev) for i in range(batch.size)]

    def check_declares() -> None:
        cls = op_cls()
        base = Editor if c.kind == "editors" else Operator
        _assert(isinstance(cls, type) and issubclass(cls, base), f"{c.id}: target is not a {base.__name__} subclass")
        _assert(cls.id == c.id, f"{c.id}: class id is {cls.id!r}")
        _assert(bool(ID_PATTERN.match(cls.id)) and cls.id.startswith(cls.modality + "."), f"{c.id}: id must be '{cls.modality}.name'")
        _assert(dataclasses.is_dataclass(cls.params_type), f"{c.id}: params_type must be a dataclass")
        _assert(cls.params_type.__dataclass_params__.frozen, f"{c.id}: params_type must be frozen")
        _assert(bool(cls.summary), f"{c.id}: needs a one-line summary")
        d = cls.describe()
        _assert(d["severity"]["unit"] != "", f"{c.id}: severity needs a unit")

    def per_dims(fn: Callable[[Operator[Any], Batch], None]) -> Callable[[], None]:
        def run() -> None:
            op = op_cls()()
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

    def check_replay(op: Operator[Any], batch: Batch) -> None:
        one = batch.select([0])
        params = sample(op, one, 7)
        plan = Plan(one.exam_ids[0], 0, 0, 7, (PlannedStep(op, op.severity.extreme, params[0], {}),))
        direct, _ = apply_plans(one, [plan])
        again = replay(one, plan.provenance(), host.make_operator)
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
        Check("declares_metadata", c.id, check_declares),
        Check("keeps_shape_dtype_device", c.id, per_dims(check_shape_dtype_device)),
        Check("deterministic_under_seed", c.id, per_dims(check_deterministic)),
        Check("replays_from_provenance", c.id, per_dims(check_replay)),
        Check("masks_consistent", c.id, per_dims(check_masks)),
        Check("batch_invariant", c.id, per_dims(check_batch_invariant)),
        Check("rejects_wrong_domain", c.id, per_dims(check_rejects_wrong_domain)),
    ]
    if c.kind == "operators":  # physics operators: the severity range must have a source
        checks.append(Check("severity_has_source", c.id, lambda: check_severity_source(op_cls())))
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
