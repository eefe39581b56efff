"""The benchmark helpers: timing of sampling vs apply, ratio formatting, peer warm-up."""

from __future__ import annotations

import time

import numpy as np
import pytest
import toy_plugin

from c3_core.batch import collate
from c3_core.benchmarking import (
    Peer,
    format_ratio,
    median_seconds,
    operator_bench_arguments,
    print_verdicts,
    time_operator,
    warm_peer,
)


def test_median_seconds_is_the_median_of_the_calls_and_syncs_around_each() -> None:
    calls: list[str] = []
    assert median_seconds(lambda: calls.append("f"), 3, lambda: calls.append("s")) >= 0.0
    assert calls == ["s", "f", "s"] * 3
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        median_seconds(lambda: None, 0, lambda: None)


def test_time_operator_draws_params_per_case_and_applies_once_per_repeat() -> None:
    batch = collate([toy_plugin.make_dataset(split="test")[i] for i in range(3)])
    seen: list[list[float]] = []
    op = toy_plugin.ToyGain()
    real_apply = op.apply

    def spy(b, params):  # noqa: ANN001, ANN202
        seen.append([p.gain_db for p in params])
        return real_apply(b, params)

    op.apply = spy  # type: ignore[method-assign]
    apply_s, both_s = time_operator(op, batch, 3.0, 2, lambda: None)
    assert 0.0 <= apply_s <= both_s
    assert len(seen) == 3  # one warm-up and two timed repeats
    assert seen[0] == seen[1] == seen[2] and all(abs(g) == 3.0 for g in seen[0])  # case i from generator_from_seed(i)


def test_format_ratio() -> None:
    assert [format_ratio(r) for r in (123.4, 12.0, 3.456, 0.04567)] == ["123x", "12x", "3.5x", "0.046x"]


def test_warm_peer_reports_a_failure_instead_of_raising(capsys) -> None:  # noqa: ANN001
    image = np.zeros((4, 4), dtype=np.uint8)

    def boom(x):  # noqa: ANN001, ANN202
        raise TypeError("gaussian() got an unexpected keyword argument 'multichannel'")

    assert warm_peer(Peer("lib", "blur", "u8", boom), image) == "error: TypeError: gaussian() got an unexpected keyword argument 'multichannel'"
    assert warm_peer(Peer("lib", "same", "u8", lambda x: x.copy()), image) is None
    assert "lib same left the image unchanged" in capsys.readouterr().err
    assert warm_peer(Peer("lib", "add", "u8", lambda x: x + 1), image) is None


def test_compare_prints_every_peer_and_judges_floor_and_same_physics_peers(capsys) -> None:  # noqa: ANN001
    import time

    from c3_core.benchmarking import Floor, Row, clone_floor, compare

    batch = collate([toy_plugin.make_dataset(split="test")[i] for i in range(2)])
    images = {"u8": [np.zeros((4, 4), dtype=np.uint8)] * 2}
    slow = Peer("lib", "slow", "u8", lambda x: (time.sleep(0.05), x + 1)[1], same_physics=True)
    other = Peer("lib", "other", "u8", lambda x: x + 1)
    broken = Peer("lib", "broken", "u8", lambda x: 1 / 0, same_physics=True)
    rows = [Row("gain", toy_plugin.ToyGain(), 3.0, [slow, other, broken], floor=clone_floor()), Row("alone", toy_plugin.ToyGain(), 3.0)]
    verdicts = compare(rows, {2: batch}, images, 1, lambda: None)
    out = capsys.readouterr().out
    assert "lib slow [same physics]" in out and "lib other" in out and "error: ZeroDivisionError" in out
    assert "(no peer run: none installed, or no library does this physics)" in out and "element-wise: a clone" in out and "(no floor declared)" in out
    assert len(verdicts) == 2  # the floor and the one same-physics peer that ran; "other" is listed only
    assert verdicts[0].startswith("PASS  gain, B=2: apply") or verdicts[0].startswith("FAIL  gain, B=2: apply")
    assert "its floor (a clone" in verdicts[0] and "target <= 3x (element-wise)" in verdicts[0]
    assert verdicts[1].startswith("PASS  gain, B=2:") and "lib slow (same physics" in verdicts[1]
    slow_floor = Floor("element-wise", "a sleep", lambda b: time.sleep(0.05))
    assert compare([Row("gain", toy_plugin.ToyGain(), 3.0, floor=slow_floor)], {2: batch}, images, 1, lambda: None)[0].startswith("PASS")
    assert compare(rows[:1], {2: batch}, images, 1, lambda: None, peer_target=1e9)[1].startswith("FAIL")


def test_floors_time_the_work_they_name() -> None:
    import torch

    from c3_core.benchmarking import FLOOR_TARGETS, Floor, fft_floor, normal_floor, photon_floor, resample_floor

    batch = collate([toy_plugin.make_dataset(split="test")[i] for i in range(2)])
    assert FLOOR_TARGETS == {"element-wise": 3.0, "noise": 1.5, "fft": 3.0, "resample": 3.0}
    z = normal_floor(2).work(batch)
    assert z.shape == (2, *batch.image.shape) and normal_floor(2).target == 1.5
    fl = photon_floor(lambda b: torch.full_like(b.image, 10.0).index_fill_(0, torch.tensor([0]), 100.0))
    draws, exact = fl.work(fl.prepare(batch))
    assert draws.shape == (1, *batch.image.shape) and exact.numel() == batch.image[1].numel()  # case 1 is below 20 counts
    assert torch.allclose(fft_floor().work(batch), batch.image, atol=1e-5)
    rs = resample_floor()
    assert rs.work(rs.prepare(batch)).shape == batch.image.shape and rs.kind == "resample"
    with pytest.raises(ValueError, match="floor kind"):
        Floor("magic", "?", lambda b: None)


def test_admissible_clamps_into_the_severity_range() -> None:
    from c3_core.benchmarking import admissible

    op = toy_plugin.ToyGain()
    lo, hi = op.severity.low, op.severity.high
    assert admissible(op, hi + 100) == hi and admissible(op, lo - 100) == lo and admissible(op, (lo + hi) / 2) == (lo + hi) / 2


def test_print_verdicts_counts_the_failed_targets_and_reports_the_wall_time(capsys) -> None:  # noqa: ANN001
    print_verdicts(["PASS  a, single: ...", "FAIL  b, B=8: ...", "FAIL  c, B=8: ..."], time.perf_counter() - 2.0)
    lines = capsys.readouterr().out.splitlines()
    assert lines[:3] == ["PASS  a, single: ...", "FAIL  b, B=8: ...", "FAIL  c, B=8: ..."]
    assert lines[3] == "2 target(s) failed"
    assert lines[4].startswith("total 2 s; load average ")
    print_verdicts(["PASS  a, single: ..."], time.perf_counter())
    assert capsys.readouterr().out.splitlines()[1] == "all targets met"


def test_operator_bench_arguments_are_the_shared_options() -> None:
    ap = operator_bench_arguments("Doc line.\n\nMore.", "64 x 64 images", only="; 'ct': the CT rows")
    assert ap.description == "Doc line."
    assert vars(ap.parse_args([])) == {"quick": False, "repeats": 3, "only": "", "device": "cpu"}
    args = ap.parse_args(["--quick", "--repeats", "7", "--only", "ct,dose", "--device", "cuda"])
    assert (args.quick, args.repeats, args.only, args.device) == (True, 7, "ct,dose", "cuda")
    shown = " ".join(ap.format_help().split())  # argparse wraps the help text
    assert "to run; 'ct': the CT rows" in shown and "64 x 64 images, 1 repeat (smoke run)" in shown
    with pytest.raises(SystemExit):
        ap.parse_args(["--repeats", "many"])
