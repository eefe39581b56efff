"""The host work's shortcuts give the values of the plain code they replace (issue 18): the same
seeds, draws, JSON text and realised counterfactuals, so no stored result changes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
import torch

from c3_core._jsonenc import dumps, dumps_sorted
from c3_core.provenance import params_to_dict


def test_json_encoders_write_what_json_dumps_writes() -> None:
    values = ["x", 'é"\n', 1, 1.5, float("nan"), float("inf"), -0.0, 1e300, 5e-324, 2**70, True, None, [], {},
              {"b": 1, "a": [1.0, 2, None, "é"], "c": {"z": 0.1, "y": (1, 2)}}, [{"k": {"a": 1}}]]
    for v in values:
        assert dumps(v) == json.dumps(v)
        assert dumps_sorted(v) == json.dumps(v, sort_keys=True)
    with pytest.raises(TypeError, match="not JSON serializable"):
        dumps({"a": object()})


def test_params_to_dict_passes_scalars_and_lists_tuples() -> None:
    @dataclass(frozen=True)
    class P:
        a: float
        b: tuple[int, ...] = (1, 2)

    assert params_to_dict(P(0.5)) == {"a": 0.5, "b": [1, 2]}
    assert params_to_dict(P(1.5, (3,))) == {"a": 1.5, "b": [3]}
    with pytest.raises(TypeError):
        params_to_dict(object())


def test_realise_equals_apply_plans_on_the_repeated_batch() -> None:
    """realise never makes the K copies of each image; the rows equal apply_plans' on them
    (a spatial operator with a mask, a composition, an operator-check rejection)."""
    import toy_plugin

    from c3_core.batch import collate
    from c3_core.neighbourhood import Neighbourhood, NeighbourhoodSpec, apply_plans
    from c3_core.plugins.host import PluginHost

    host = PluginHost(autoload=False, modules={"toy": toy_plugin}).load()
    spec = NeighbourhoodSpec.from_toml_string(
        'k = 6\nseed = 3\n[[members]]\nop = "toy.gain"\nlevels = [1.0, 6.0]\n'
        '[[members]]\nsteps = [ { op = "toy.gain", severity = [0.5, 3.0] }, { op = "toy.noise", severity = [0.05, 0.2] } ]\n'
        '[[members]]\nop = "toy.shift"\nseverity = 2\n'
    )
    nb = Neighbourhood(spec, host.make_operator)
    ds = toy_plugin.make_dataset(n=5)
    batch = collate([ds[i] for i in range(5)])
    plans = nb.plan(batch)
    cf, reasons = nb.realise(batch, plans)
    ref, ref_reasons = apply_plans(batch.repeat_interleave(spec.k), [p for case in plans for p in case])
    assert torch.equal(cf.image, ref.image) and reasons == ref_reasons
    for a, b in ((cf.mask, ref.mask), (cf.label, ref.label)):
        assert (a is None and b is None) or torch.equal(a.nan_to_num(-7), b.nan_to_num(-7))
    assert cf.exam_ids == ref.exam_ids and cf.spacing == ref.spacing
    assert torch.equal(batch.image, collate([ds[i] for i in range(5)]).image)  # the source is left as it was


def test_draw_beside_writes_the_counterfactuals_after_the_originals() -> None:
    """draw_beside gives draw's counterfactuals, plans and rejections, and one tensor holding the
    originals then the counterfactuals, whose rows B: are the returned batch's image (no copy);
    plans with an empty step list (identity rows, only built by hand) take the concatenating path."""
    import dataclasses

    import toy_plugin

    from c3_core.batch import collate
    from c3_core.neighbourhood import Neighbourhood, NeighbourhoodSpec
    from c3_core.plugins.host import PluginHost

    host = PluginHost(autoload=False, modules={"toy": toy_plugin}).load()
    ds = toy_plugin.make_dataset(n=4)
    batch = collate([ds[i] for i in range(4)])
    nb = Neighbourhood(NeighbourhoodSpec.from_toml_string(
        'k = 5\nseed = 2\n[[members]]\nop = "toy.gain"\nlevels = [1.0, 6.0]\n'
        '[[members]]\nsteps = [ { op = "toy.shift", severity = 2 }, { op = "toy.noise", severity = [0.05, 0.2] } ]\n'
    ), host.make_operator)
    cf, plans, reasons = nb.draw(batch)
    stacked, cf2, plans2, reasons2 = nb.draw_beside(batch)
    assert stacked.shape == (batch.size * (nb.k + 1), *batch.image.shape[1:])
    assert torch.equal(stacked[: batch.size], batch.image) and torch.equal(stacked[batch.size :], cf.image)
    assert torch.equal(cf2.image, cf.image) and plans2 == plans and reasons2 == reasons
    assert torch.equal(cf2.label, cf.label) and cf2.exam_ids == cf.exam_ids
    assert cf2.image.data_ptr() == stacked[batch.size :].data_ptr()  # a view of it, not a copy
    none, cf5, plans5, reasons5 = nb.draw_beside(batch, stack=False)
    assert none is None and torch.equal(cf5.image, cf.image) and plans5 == plans and reasons5 == reasons
    with_identity = [[dataclasses.replace(case[0], steps=()), *case[1:]] for case in plans]
    cf3, reasons3 = nb.realise(batch, with_identity)
    cf4, reasons4, stacked4 = nb._realise(batch, with_identity, beside=True)
    assert torch.equal(cf4.image, cf3.image) and reasons4 == reasons3
    assert torch.equal(stacked4, torch.cat([batch.image, cf3.image]))
    assert torch.equal(cf3.image[:: nb.k], batch.image)  # the identity rows are the originals


def test_the_scored_provenance_record_is_the_plans_provenance() -> None:
    """score_batch writes each counterfactual's provenance without building Provenance objects;
    the label, first step and JSON text are those of ``plan.provenance()`` (one format, checked)."""
    import toy_plugin

    from c3_core.batch import collate
    from c3_core.evaluation.scoring import _ProvenanceWriter
    from c3_core.neighbourhood import Neighbourhood, NeighbourhoodSpec
    from c3_core.plugins.host import PluginHost

    host = PluginHost(autoload=False, modules={"toy": toy_plugin}).load()
    spec = NeighbourhoodSpec.from_toml_string(
        'k = 4\nseed = 9\n[[members]]\nop = "toy.gain"\nlevels = [1.0, 6.0]\n'
        '[[members]]\nsteps = [ { op = "toy.gain", severity = [0.5, 3.0] }, { op = "toy.noise", severity = [0.05, 0.2] } ]\n'
        '[[members]]\nop = "toy.shift"\nseverity = 2\n'
    )
    ds = toy_plugin.make_dataset(n=3)
    plans = Neighbourhood(spec, host.make_operator).plan(collate([ds[i] for i in range(3)]))
    writer = _ProvenanceWriter()  # one per batch: its cached step heads serve every plan
    for plan in (p for case in plans for p in case):
        prov = plan.provenance()
        expected = (prov.label, prov.steps[0].op_id, prov.steps[0].severity,
                    json.dumps(prov.to_dict() | {"exam_id": "written-id"}, sort_keys=True))  # fmt: skip
        assert writer(plan, "written-id") == expected


def test_provenance_json_is_json_dumps_sorted() -> None:
    """The one provenance writer (Provenance.to_json, the evaluation's rows) writes what
    ``json.dumps(..., sort_keys=True)`` writes, for awkward ids, options, params and severities."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from c3_core.provenance import Provenance, Step

    scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.text(max_size=8),
                        st.floats(allow_nan=True, allow_infinity=True))
    values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
                          max_leaves=6)
    steps = st.builds(Step, op_id=st.text(min_size=1, max_size=12), op_version=st.text(max_size=3),
                      severity=st.one_of(st.floats(allow_nan=False), st.integers(-5, 5)),
                      params=st.dictionaries(st.text(max_size=6), values, max_size=4),
                      options=st.dictionaries(st.text(max_size=6), values, max_size=3))
    records = st.builds(Provenance, exam_id=st.text(max_size=16), index=st.integers(0, 10**6),
                        member=st.integers(0, 99), seed=st.integers(-2**63, 2**63), steps=st.lists(steps, max_size=3).map(tuple))

    @settings(max_examples=300, deadline=None)
    @given(records)
    def check(prov: Provenance) -> None:
        assert prov.to_json() == json.dumps(prov.to_dict(), sort_keys=True)

    check()


def test_params_json_writer_writes_what_json_dumps_writes() -> None:
    """The per-type params template writes ``json.dumps(params_to_dict(p), sort_keys=True)`` for
    non-ASCII and upper-case field names and awkward values (non-finite floats, huge ints, bools, None, escapes, nested
    lists, enums), one field or several, and refuses what is not a dataclass."""
    import dataclasses
    import enum

    from hypothesis import given, settings
    from hypothesis import strategies as st

    from c3_core.provenance import params_json_writer

    class Kind(enum.Enum):
        A = "a\u00e9"
        B = 2

    @dataclasses.dataclass(frozen=True)
    class Many:
        zeta: Any
        alpha: Any
        _b: Any
        with_default: Any = dataclasses.field(default=None)

    Odd = dataclasses.make_dataclass("Odd", [("σ_read", Any), ("Z", Any)], frozen=True)  # non-ASCII, upper case

    @dataclasses.dataclass(frozen=True)
    class One:
        x: Any

    @dataclasses.dataclass(frozen=True)
    class Empty:
        pass

    scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.text(max_size=6),
                        st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(list(Kind)))
    values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3).map(tuple) | st.lists(inner, max_size=3),
                          max_leaves=5)

    @settings(max_examples=300, deadline=None)
    @given(values, values, values, values)
    def check(a: Any, b: Any, c: Any, d: Any) -> None:
        for params in (Many(a, b, c, d), One(a), Odd(a, b)):
            assert params_json_writer(type(params))(params) == json.dumps(params_to_dict(params), sort_keys=True)

    check()
    assert params_json_writer(Empty)(Empty()) == "{}"
    with pytest.raises(TypeError, match="dataclass"):
        params_json_writer(int)
