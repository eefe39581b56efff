"""The neighbourhood: spec parsing, per-exam seeding, composition, replay."""

from __future__ import annotations

import pytest
import torch
import toy_plugin

from c3_core.batch import collate
from c3_core.neighbourhood import Neighbourhood, NeighbourhoodSpec, NeighbourhoodSpecError, apply_plans, replay
from c3_core.plugins.host import PluginHost

SPEC = """
k = 5
seed = 11

[[members]]
op = "toy.gain"
levels = [1.0, 6.0]

[[members]]
weight = 2.0
steps = [
  { op = "toy.gain", severity = [0.5, 3.0] },
  { op = "toy.noise", severity = [0.05, 0.2] },
]

[[members]]
op = "toy.shift"
severity = 2
"""


@pytest.fixture()
def host() -> PluginHost:
    return PluginHost(autoload=False, modules={"toy": toy_plugin}).load()


def _batch(n: int):
    ds = toy_plugin.make_dataset(n=n)
    return collate([ds[i] for i in range(n)])


def test_batch_size_does_not_change_counterfactuals(host: PluginHost) -> None:
    spec = NeighbourhoodSpec.from_toml_string(SPEC)
    nb = Neighbourhood(spec, host.make_operator)
    whole = _batch(7)
    cf7, plans7, _ = nb.draw(whole)
    singles = [nb.draw(whole.select([i]))[0].image for i in range(7)]
    assert torch.equal(cf7.image, torch.cat(singles))
    # reversed order: the same case gets the same counterfactuals
    rev = whole.select(list(range(6, -1, -1)))
    cf_rev, plans_rev, _ = nb.draw(rev)
    assert torch.equal(cf_rev.image[:5], cf7.image[-5:])
    assert [p.provenance() for p in plans_rev[0]] == [p.provenance() for p in plans7[6]]


def test_composition_and_members_are_all_used(host: PluginHost) -> None:
    spec = NeighbourhoodSpec.from_toml_string(SPEC).with_overrides(k=40)
    nb = Neighbourhood(spec, host.make_operator)
    plans = nb.plan(_batch(3))
    members = {p.member for case in plans for p in case}
    assert members == {0, 1, 2}
    composed = [p for case in plans for p in case if p.member == 1]
    assert all([s.operator.id for s in p.steps] == ["toy.gain", "toy.noise"] for p in composed)
    levels = {p.steps[0].severity for case in plans for p in case if p.member == 0}
    assert levels <= {1.0, 6.0}


def test_replay_is_bit_identical(host: PluginHost) -> None:
    nb = Neighbourhood(NeighbourhoodSpec.from_toml_string(SPEC), host.make_operator)
    batch = _batch(2)
    cf, plans, _ = nb.draw(batch)
    prov = plans[1][3].provenance()
    again = replay(batch.select([1]), prov, host.make_operator)
    assert torch.equal(again.image[0], cf.image[1 * 5 + 3])
    from c3_core.provenance import Provenance

    assert Provenance.from_dict(prov.to_dict()) == prov


def test_spatial_operator_moves_mask_intensity_keeps_it(host: PluginHost) -> None:
    spec = NeighbourhoodSpec.from_toml_string('k = 3\n[[members]]\nop = "toy.shift"\nseverity = 3\n')
    batch = _batch(2)
    cf, _, _ = Neighbourhood(spec, host.make_operator).draw(batch)
    assert torch.equal(cf.mask[3], torch.roll(batch.mask[1], 3, dims=-1))
    spec = NeighbourhoodSpec.from_toml_string('k = 3\n[[members]]\nop = "toy.noise"\n')
    cf, _, _ = Neighbourhood(spec, host.make_operator).draw(batch)
    assert torch.equal(cf.mask, batch.repeat_interleave(3).mask)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("k = 3\n[[members]\nop='toy.gain'", "not valid TOML"),
        ("k = 0\n[[members]]\nop = 'toy.gain'", "k must be a positive integer"),
        ("k = 2", "needs at least one [[members]]"),
        ("[[members]]\nop = 'toy.gain'\nseverity = [0.0, 60.0]", "outside the admissible range"),
        ("[[members]]\nop = 'toy.nope'", "unknown operator id 'toy.nope'"),
        ("[[members]]\nop = 'gain'", "must be an operator id"),
        ("[[members]]\nop = 'toy.gain'\nseverity = 1\nlevels = [1]", "either 'severity' or 'levels'"),
        ("[[members]]\nop = 'toy.gain'\nspeed = 1", "unknown key(s) ['speed']"),
        ("bogus = 1\n[[members]]\nop = 'toy.gain'", "unknown top-level key"),
    ],
)
def test_malformed_specs_are_named_errors(host: PluginHost, text: str, message: str) -> None:
    with pytest.raises(NeighbourhoodSpecError) as err:
        Neighbourhood(NeighbourhoodSpec.from_toml_string(text, source="spec.toml"), host.make_operator)
    assert message in str(err.value)
    assert "spec.toml" in str(err.value)


def test_missing_spec_file_names_the_file(tmp_path) -> None:
    with pytest.raises(NeighbourhoodSpecError, match="nowhere.toml"):
        NeighbourhoodSpec.from_toml(tmp_path / "nowhere.toml")


def test_spec_round_trips_through_dict() -> None:
    spec = NeighbourhoodSpec.from_toml_string(SPEC)
    again = NeighbourhoodSpec.from_dict(spec.to_dict())
    assert again.members == spec.members and again.k == spec.k and again.seed == spec.seed


class _RatioCheck:
    """A check that rejects a counterfactual whose mean exceeds 1.5x its reference's."""

    def check(self, original, counterfactual, params):  # type: ignore[no-untyped-def]
        ratio = counterfactual.image.flatten(1).mean(1) / original.image.flatten(1).mean(1)
        return [None if r <= 1.5 else f"{self.id}: mean x{r:.2f}" for r in ratio.tolist()]


class _GainCheckedAgainstInput(_RatioCheck, toy_plugin.ToyGain):
    id = "toy.gain_input"


class _GainCheckedAgainstCase(_RatioCheck, toy_plugin.ToyGain):
    id = "toy.gain_case"
    check_reference = "case"


@pytest.mark.parametrize("k", [1, 3])
def test_check_reference_case_sees_the_whole_chain(host: PluginHost, k: int) -> None:
    # two +3 dB steps: each multiplies the mean by 1.41 (passes 1.5), together by 2.0 (fails)
    ops = {"toy.gain_input": _GainCheckedAgainstInput(), "toy.gain_case": _GainCheckedAgainstCase()}
    batch = _batch(2)
    batch = batch.replace(image=batch.image.abs() + 0.5)  # positive means, so the ratio is the gain
    reasons = {}
    for op_id in ops:
        steps = f'{{ op = "{op_id}", levels = [3.0] }}'
        spec = NeighbourhoodSpec.from_toml_string(f"k = {k}\n[[members]]\nsteps = [{steps}, {steps}]\n")
        nb = Neighbourhood(spec, lambda i, o: ops[i])
        plans = nb.plan(batch)
        for case in plans:  # positive gains only, so both steps push the same way
            for j, p in enumerate(case):
                case[j] = p.__class__(p.exam_id, p.index, p.member, p.seed, tuple(
                    s.__class__(s.operator, s.severity, toy_plugin.GainParams(3.0), s.options) for s in p.steps))
        _, got = nb.realise(batch, plans)  # the planner's path (rows read from the source batch)
        flat = [p for case in plans for p in case]
        _, again = apply_plans(batch.repeat_interleave(k), flat)  # the plain path
        assert got == again
        reasons[op_id] = got
    assert reasons["toy.gain_input"] == [None] * (2 * k)  # each step alone passes
    assert all(r is not None and "mean x2.00" in r for r in reasons["toy.gain_case"])  # the second sees x2


def test_check_reference_is_validated_and_catalogued() -> None:
    with pytest.raises(TypeError, match="check_reference must be one of"):
        type("Bad", (toy_plugin.ToyGain,), {"id": "toy.bad", "check_reference": "step"})
    # the catalogue (c3 ops --json) says what each check compares with
    assert _GainCheckedAgainstInput.describe()["check_reference"] == "input"
    assert _GainCheckedAgainstCase.describe()["check_reference"] == "case"


class _GainEdit(toy_plugin.ToyGain):
    """A gain that declares a label change (an edit: its output's truth is not the case's)."""

    id = "toy.gain_edit"
    preserves = frozenset({"mask"})
    changes = frozenset({"label"})


def test_a_case_check_after_an_edit_compares_with_the_step_input(host: PluginHost) -> None:
    # rows 0, 1: gain, then the case-checked gain; rows 2, 3: an edit, then the same: both second
    # steps run in one group, which is checked in two calls (case rows, edited rows)
    from c3_core.neighbourhood import Plan, PlannedStep

    ops = {"gain": toy_plugin.ToyGain(), "edit": _GainEdit(), "case": _GainCheckedAgainstCase()}
    batch = _batch(4)
    batch = batch.replace(image=batch.image.abs() + 0.5)
    gain = toy_plugin.GainParams(3.0)
    plans = [Plan(batch.exam_ids[i], 0, 0, 0, (PlannedStep(ops["edit" if i >= 2 else "gain"], 3.0, gain, {}),
                                               PlannedStep(ops["case"], 3.0, gain, {}))) for i in range(4)]
    _, reasons = apply_plans(batch, plans)
    assert all(r is not None and "mean x2.00" in r for r in reasons[:2])  # measured against the case
    assert reasons[2:] == [None, None]  # after the edit: against the edited input (x1.41)


class _Counted:
    """Counts its ``apply`` calls and the rows each call got."""

    def __init__(self, op):  # type: ignore[no-untyped-def]
        self.op, self.calls = op, []

    def __getattr__(self, name):  # type: ignore[no-untyped-def]
        return getattr(self.op, name)

    def apply(self, batch, params):  # type: ignore[no-untyped-def]
        self.calls.append(batch.size)
        return self.op.apply(batch, params)


def _planned(host: PluginHost, batch, chains, k: int = 1):  # type: ignore[no-untyped-def]
    """Plans applying ``chains[r % len(chains)]`` (operator ids) to row r of ``batch`` repeated k times,
    with params drawn from a fixed generator, and the counted operators by id."""
    from c3_core.neighbourhood import Plan, PlannedStep

    ops = {i: _Counted(host.make_operator(i, {})) for i in ("toy.gain", "toy.noise", "toy.shift")}
    g = torch.Generator().manual_seed(3)
    rows = batch.size * k
    plans = []
    for r in range(rows):
        info = batch.case_info(r // k)
        steps = tuple(PlannedStep(ops[i], ops[i].severity.extreme, ops[i].op.sample_params(info, g, ops[i].severity.extreme), {})
                      for i in chains[r % len(chains)])
        plans.append(Plan(batch.exam_ids[r // k], r % k, 0, 0, steps))
    return plans, ops


def _one_by_one(batch, plans, k: int = 1):  # type: ignore[no-untyped-def]
    """Each row realised alone, step after step: what the batched schedule must reproduce."""
    return torch.cat([apply_plans(batch.select([r // k]), [p])[0].image for r, p in enumerate(plans)])


def test_an_operator_runs_once_for_the_rows_of_every_chain_position(host: PluginHost) -> None:
    # the chains order gain before noise before shift: each operator is one call, whichever position
    # its rows are at (the step-by-step order made gain 1, noise 2 and shift 3 calls)
    batch = _batch(6)
    chains = [("toy.gain",), ("toy.noise",), ("toy.gain", "toy.noise"), ("toy.shift",), ("toy.gain", "toy.noise", "toy.shift")]
    for k in (1, 2):
        plans, ops = _planned(host, batch, chains, k)
        nb = Neighbourhood(NeighbourhoodSpec.from_toml_string(SPEC).with_overrides(k=k), host.make_operator)
        got, _ = nb.realise(batch, [plans[i * k : (i + 1) * k] for i in range(batch.size)])  # rows read from the source
        assert {i: len(op.calls) for i, op in ops.items()} == {"toy.gain": 1, "toy.noise": 1, "toy.shift": 1}
        plain, _ = apply_plans(batch.repeat_interleave(k), plans)
        assert torch.equal(got.image, plain.image)
        assert torch.equal(got.image, _one_by_one(batch, plans, k))
        assert torch.equal(got.mask, torch.cat([apply_plans(batch.select([r // k]), [p])[0].mask for r, p in enumerate(plans)]))


def test_chains_in_both_orders_keep_each_rows_order(host: PluginHost) -> None:
    # gain then noise is not noise then gain (the gain scales the noise): every row gets its own
    # order, though no order of the calls runs each operator once
    batch = _batch(4)
    plans, ops = _planned(host, batch, [("toy.gain", "toy.noise"), ("toy.noise", "toy.gain")])
    got, _ = apply_plans(batch, plans)
    assert [len(ops[i].calls) for i in ("toy.gain", "toy.noise")] == [2, 1]  # gain (rows 0, 2), noise (all), gain (1, 3)
    assert torch.equal(got.image, _one_by_one(batch, plans))
    swapped = [p.__class__(p.exam_id, p.index, p.member, p.seed, p.steps[::-1]) for p in plans]
    assert not torch.equal(apply_plans(batch, swapped)[0].image, got.image)  # the order matters here
