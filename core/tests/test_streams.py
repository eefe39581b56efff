"""Counter-based planning streams: Philox4x32-10 against Random123's known answers, the step
streams operators draw from, and the statistics and invariances of plans drawn from them."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import toy_plugin
from scipy import stats

from c3_core.batch import collate
from c3_core.neighbourhood import Neighbourhood, NeighbourhoodSpec
from c3_core.plugins.host import PluginHost
from c3_core.seeding import draw_seed, random_sign, uniform, uniform_tensor
from c3_core.streams import StepStream, philox4x32, philox4x32_block, stream_key, stream_words

# Random123's kat_vectors for philox4x32_10: (counter, key) -> output block
KNOWN_ANSWERS = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize(("counter", "key", "expected"), KNOWN_ANSWERS)
def test_philox_reproduces_random123_known_answers(counter, key, expected) -> None:
    assert tuple(int(v) for v in philox4x32(np.array(counter), np.array(key))) == expected
    assert philox4x32_block(counter, key) == expected


def test_vectorised_and_scalar_philox_agree_and_broadcast() -> None:
    rng = np.random.default_rng(3)
    counters = rng.integers(0, 2**32, (64, 4), dtype=np.uint64)
    keys = rng.integers(0, 2**32, (64, 2), dtype=np.uint64)
    out = philox4x32(counters, keys)
    assert out.dtype == np.uint32 and out.shape == (64, 4)
    for c, k, o in zip(counters.tolist(), keys.tolist(), out.tolist()):
        assert philox4x32_block(c, k) == tuple(o)
    one_key = philox4x32(counters, keys[0])  # a key shared by every counter broadcasts
    assert one_key.tolist() == [list(philox4x32_block(c, keys[0].tolist())) for c in counters.tolist()]
    with pytest.raises(ValueError, match="counters"):
        philox4x32(np.zeros((3, 3)), np.zeros((3, 2)))


def test_step_stream_continues_past_its_precomputed_words() -> None:
    key = stream_key(7, "exam-a")
    whole = stream_words(np.array([key]), np.array([3]), np.array([2]), blocks=5)[0].tolist()
    stream = StepStream(key, 3, 2, whole[:4])  # one block precomputed, the rest on demand
    assert [stream.word() for _ in range(19)] == whole[1:20]  # word 0 is the step's severity


def test_step_stream_draws_are_uniform() -> None:
    key = stream_key(0, "exam-u")
    stream = StepStream(key, 0, 1, [])
    u = np.array(stream.units(20_000))
    assert u.min() >= 0.0 and u.max() < 1.0
    assert stats.kstest(u, "uniform").pvalue > 1e-3
    bits = np.array([stream.integer(62) for _ in range(4_000)], dtype=np.float64)
    assert bits.max() < 2.0**62
    assert stats.kstest(bits / 2.0**62, "uniform").pvalue > 1e-3
    with pytest.raises(ValueError, match="bits"):
        stream.integer(65)


def test_seeding_helpers_take_both_sources_and_keep_the_generator_values() -> None:
    g = torch.Generator().manual_seed(5)
    expected = 2.0 + 3.0 * float(torch.rand((), generator=torch.Generator().manual_seed(5)))
    assert uniform(g, 2.0, 5.0) == expected  # the torch path is unchanged
    g = torch.Generator().manual_seed(5)
    assert torch.equal(uniform_tensor(g, 6), torch.rand(6, generator=torch.Generator().manual_seed(5), dtype=torch.float64))
    stream = StepStream(stream_key(1, "e"), 0, 1, [])
    twin = StepStream(stream_key(1, "e"), 0, 1, [])
    assert uniform(stream, 2.0, 5.0) == 2.0 + 3.0 * twin.unit()
    assert draw_seed(stream) == twin.integer(62)
    assert uniform_tensor(stream, 3).tolist() == twin.units(3)
    assert random_sign(stream) == (1.0 if twin.unit() < 0.5 else -1.0)


SPEC = """
k = 8
seed = 3

[[members]]
op = "toy.gain"
levels = [1.0, 2.0, 4.0, 6.0]

[[members]]
weight = 3.0
steps = [
  { op = "toy.gain", severity = [0.5, 3.0] },
  { op = "toy.noise", severity = [0.05, 0.2] },
]
"""


@pytest.fixture()
def host() -> PluginHost:
    return PluginHost(autoload=False, modules={"toy": toy_plugin}).load()


def _plans(host: PluginHost, n: int, k: int, stream_sampling: bool, monkeypatch: pytest.MonkeyPatch) -> list:
    monkeypatch.setattr(toy_plugin.ToyGain, "stream_sampling", stream_sampling)
    monkeypatch.setattr(toy_plugin.ToyNoise, "stream_sampling", stream_sampling)
    nb = Neighbourhood(NeighbourhoodSpec.from_toml_string(SPEC).with_overrides(k=k), host.make_operator)
    ds = toy_plugin.make_dataset(n=n)
    return nb.plan(collate([ds[i] for i in range(n)]))


@pytest.mark.parametrize("stream_sampling", [True, False])
def test_members_levels_and_ranges_follow_the_spec(host, monkeypatch, stream_sampling: bool) -> None:
    plans = [p for case in _plans(host, 40, 50, stream_sampling, monkeypatch) for p in case]  # 2,000 plans
    members = np.bincount([p.member for p in plans], minlength=2)
    assert stats.chisquare(members, [len(plans) * 0.25, len(plans) * 0.75]).pvalue > 1e-3
    levels = [p.steps[0].severity for p in plans if p.member == 0]
    counts = [levels.count(v) for v in (1.0, 2.0, 4.0, 6.0)]
    assert sum(counts) == len(levels) and stats.chisquare(counts).pvalue > 1e-3
    gains = np.array([p.steps[0].severity for p in plans if p.member == 1])
    noise = np.array([p.steps[1].severity for p in plans if p.member == 1])
    assert stats.kstest((gains - 0.5) / 2.5, "uniform").pvalue > 1e-3
    assert stats.kstest((noise - 0.05) / 0.15, "uniform").pvalue > 1e-3
    # the two steps' streams are independent: their severities are uncorrelated
    assert abs(stats.pearsonr(gains, noise).statistic) < 4.0 / math.sqrt(len(gains))


def test_plans_depend_only_on_seed_exam_and_index(host, monkeypatch) -> None:
    monkeypatch.setattr(toy_plugin.ToyGain, "stream_sampling", True)
    nb = Neighbourhood(NeighbourhoodSpec.from_toml_string(SPEC), host.make_operator)
    ds = toy_plugin.make_dataset(n=6)
    whole = nb.plan(collate([ds[i] for i in range(6)]))
    single = [nb.plan(collate([ds[i]]))[0] for i in (5, 2, 0)]
    for got, i in zip(single, (5, 2, 0)):
        assert [p.provenance() for p in got] == [p.provenance() for p in whole[i]]
    assert [p.provenance() for p in nb.plan_case(collate([ds[i] for i in range(6)]), 4)] == [
        p.provenance() for p in whole[4]]
    other = nb.reseeded(4).plan(collate([ds[0]]))[0]
    assert [p.steps[0].params for p in other] != [p.steps[0].params for p in whole[0]]
    # the first k plans of a larger K are the K plans: counterfactual k reads counter k only
    more = Neighbourhood(NeighbourhoodSpec.from_toml_string(SPEC).with_overrides(k=12), host.make_operator)
    longer = more.plan(collate([ds[0]]))[0]
    assert [p.provenance() for p in longer[:8]] == [p.provenance() for p in whole[0]]


def test_a_step_without_stream_sampling_gets_a_generator_seeded_from_its_stream(host, monkeypatch) -> None:
    monkeypatch.setattr(toy_plugin.ToyGain, "stream_sampling", False)
    seen: list[object] = []
    inner = toy_plugin.ToyGain._sample

    def spy(self, info, generator, severity):
        seen.append(generator)
        return inner(self, info, generator, severity)

    monkeypatch.setattr(toy_plugin.ToyGain, "_sample", spy)
    nb = Neighbourhood(NeighbourhoodSpec.from_toml_string(SPEC), host.make_operator)
    ds = toy_plugin.make_dataset(n=2)
    batch = collate([ds[i] for i in range(2)])
    first = nb.plan(batch)
    assert seen and all(isinstance(g, torch.Generator) for g in seen)
    assert [p.provenance() for c in nb.plan(batch) for p in c] == [p.provenance() for c in first for p in c]


def test_a_batch_of_another_modality_is_refused(host) -> None:
    nb = Neighbourhood(NeighbourhoodSpec.from_toml_string(SPEC), host.make_operator)
    ds = toy_plugin.make_dataset(n=1)
    batch = collate([ds[0]])
    with pytest.raises(ValueError, match="toy.gain is a toy operator"):
        nb.plan(batch.replace(modality="cxr"))


def test_an_operator_that_replaces_sample_params_is_still_called_through_it(host, monkeypatch) -> None:
    calls: list[float] = []

    def sample_params(self, info, generator, severity):  # noqa: ANN001, ANN202
        calls.append(severity)
        return toy_plugin.GainParams(1.5)

    monkeypatch.setattr(toy_plugin.ToyGain, "sample_params", sample_params)
    nb = Neighbourhood(NeighbourhoodSpec.from_toml_string(SPEC), host.make_operator)
    ds = toy_plugin.make_dataset(n=2)
    plans = nb.plan(collate([ds[i] for i in range(2)]))
    gains = [s for case in plans for p in case for s in p.steps if s.operator.id == "toy.gain"]
    assert gains and len(calls) == len(gains) and all(s.params == toy_plugin.GainParams(1.5) for s in gains)
