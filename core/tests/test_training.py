"""Training with the consistency objective: schedules, checkpoints, resume, DDP, the CLI."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from fake_dists import write_dist
from typer.testing import CliRunner

from c3_core.cli import app
from c3_core.evaluation.scoring import GateSettings
from c3_core.training.checkpoint import (
    CheckpointError,
    load_checkpoint,
    read_checkpoint_meta,
    save_checkpoint,
    save_weights,
)
from c3_core.training.command import TrainRequest, run_training
from c3_core.training.schedule import LambdaSchedule, warmup_cosine_lr

TESTS = Path(__file__).parent
SPEC = """k = 2
seed = 3
[[members]]
op = "toy.gain"
levels = [3.0, 6.0]
[[members]]
op = "toy.noise"
severity = [0.05, 0.2]
"""
TOY_MODULE = '''
import torch
from toy_plugin import c3_register_operators  # noqa: F401
from c3_core.model import ModelBundle, load_state_dict_safely
from c3_core.plugins.markers import hookimpl


class LogFeatures(torch.nn.Module):
    """Logits from log(patch mean) and log(image mean): gain-invariant iff the two weights cancel."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(2, 2)
        with torch.no_grad():  # starts reading the patch alone: accurate but gain-sensitive
            self.linear.weight.copy_(torch.tensor([[-4.0, 0.0], [4.0, 0.0]]))
            self.linear.bias.copy_(torch.tensor([-1.8, 1.8]))

    def forward(self, x):
        p = x[:, :, 4:10, 4:10].mean((1, 2, 3)).clamp_min(1e-3).log()
        g = x.mean((1, 2, 3)).clamp_min(1e-3).log()
        return self.linear(torch.stack([p, g], 1))


def make_logfeat(*, weights=None, device="cpu", **options):
    net = LogFeatures()
    if weights not in (None, "demo"):
        load_state_dict_safely(weights, net)
    return ModelBundle(net.to(device), "multiclass", ("absent", "present"), "display", name="toy.logfeat")


@hookimpl
def c3_register_models(registry):
    registry.add("toy.model", "toy_plugin:make_model", "toy model", task="multiclass")
    registry.add("toy.logfeat", __name__ + ":make_logfeat", "log-feature toy model", task="multiclass")
    registry.add("toy.dropout_model", "toy_plugin:make_dropout_model", "random initialisation and dropout", task="multiclass")


@hookimpl
def c3_register_datasets(registry):
    registry.add("toy.demo", "toy_plugin:make_dataset", "toy demo", task="multiclass", demo=True,
                 default_model="toy.model", default_neighbourhood=NEIGHBOURHOOD)
'''


@pytest.fixture()
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    root = tmp_path / "site"
    root.mkdir()
    spec = root / "toy.toml"
    spec.write_text(SPEC)
    write_dist(root, "c3-toy", "c3_toy_train_entry", f"NEIGHBOURHOOD = {str(spec)!r}\n" + TOY_MODULE)
    monkeypatch.syspath_prepend(str(root))
    for var in ("C3_DISABLE_PLUGIN_AUTOLOAD", "TOY_DELAY", "TOY_FAIL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("C3_PLUGINS", "c3-toy")
    monkeypatch.setenv("TOY_N", "24")
    path = os.pathsep.join([str(root), str(TESTS), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "C3_PLUGINS": "c3-toy", "TOY_N": "24", "OMP_NUM_THREADS": "1"}


def _host():  # noqa: ANN202
    from c3_core.plugins.host import PluginHost

    return PluginHost().load()


def _request(out: Path, **options: object) -> TrainRequest:
    opts = {"epochs": 3, "batch_size": 4, "lr": 0.05, "augment": "none", "lam": 1.0, "seed": 7, **options}
    return TrainRequest(modality="toy", k=2, heldout=12, out=str(out), quiet=True, options=opts)


# -- schedules ----------------------------------------------------------------------------------
def test_lambda_schedules() -> None:
    assert LambdaSchedule(2.0)(0) == LambdaSchedule(2.0)(10_000) == 2.0
    lin = LambdaSchedule(2.0, "linear", 10)
    assert [lin(s) for s in (0, 5, 10, 50)] == [0.0, 1.0, 2.0, 2.0]
    cos = LambdaSchedule(1.0, "cosine", 4)
    assert cos(0) == 0.0 and cos(2) == pytest.approx(0.5) and cos(4) == 1.0
    assert cos(1) < 0.25 < cos(3)  # slow start, fast middle
    with pytest.raises(ValueError, match="lambda"):
        LambdaSchedule(-1.0)
    with pytest.raises(ValueError, match="schedule"):
        LambdaSchedule(1.0, "step")  # type: ignore[arg-type]


def test_warmup_cosine_lr() -> None:
    lrs = [warmup_cosine_lr(s, 100, 1.0) for s in range(100)]
    assert lrs[9] == pytest.approx(1.0) and lrs[0] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))  # monotone decay after warm-up
    assert lrs[-1] == pytest.approx(0.01, abs=2e-3)
    with pytest.raises(ValueError):
        warmup_cosine_lr(0, 0, 1.0)


# -- checkpoints --------------------------------------------------------------------------------
def test_checkpoint_round_trip_restores_weights_and_adam_moments(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    opt = torch.optim.AdamW(net.parameters(), lr=0.01)
    for _ in range(3):
        opt.zero_grad()
        net(torch.randn(8, 3)).square().mean().backward()
        opt.step()
    save_checkpoint(tmp_path / "ck", net, opt, {"state": {"epoch": 1}})
    twin = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    twin_opt = torch.optim.AdamW(twin.parameters(), lr=0.5)
    meta = load_checkpoint(tmp_path / "ck", twin, twin_opt)
    assert meta["state"] == {"epoch": 1}
    for a, b in zip(net.state_dict().values(), twin.state_dict().values()):
        assert torch.equal(a, b)
    x = torch.randn(8, 3)
    for model, o in ((net, opt), (twin, twin_opt)):  # one more identical step on both
        o.zero_grad()
        model(x).square().mean().backward()
        o.step()
    for a, b in zip(net.parameters(), twin.parameters()):
        assert torch.equal(a, b)
    assert not list(tmp_path.glob("ck/*.tmp"))


def test_checkpoint_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no checkpoint here"):
        read_checkpoint_meta(tmp_path)
    (tmp_path / "state.json").write_text('{"format": "something-else"}')
    with pytest.raises(CheckpointError, match="not a c3 training checkpoint"):
        read_checkpoint_meta(tmp_path)
    net = torch.nn.Linear(2, 2)
    save_checkpoint(tmp_path / "ok", net, torch.optim.AdamW(net.parameters()), {})
    with pytest.raises(CheckpointError, match="do not fit"):
        load_checkpoint(tmp_path / "ok", torch.nn.Linear(3, 2), torch.optim.AdamW(torch.nn.Linear(3, 2).parameters()))


# -- training runs ------------------------------------------------------------------------------
def _weights(out: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(out / "model.safetensors"))


def test_train_writes_weights_that_evaluate_reads(site: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert run_training(_request(out), _host(), echo=lambda m: None) == 0
    for name in ("model.safetensors", "model.json", "history.csv", "train.json", "checkpoint/state.json"):
        assert (out / name).is_file(), name
    record = json.loads((out / "train.json").read_text())
    assert record["task"] == "multiclass" and len(record["history"]) == 3
    assert record["heldout_consistency"]["n_pairs"] > 0
    assert (out / "history.csv").read_text().count("\n") == 4
    res = CliRunner().invoke(app, ["evaluate", "-q", "--model", str(out / "model.safetensors"), "--out", str(tmp_path / "ev")])
    assert res.exit_code == 0, res.output
    # a finished folder is refused, untouched
    before = (out / "train.json").read_bytes()
    assert run_training(_request(out), _host(), echo=lambda m: None) == 2
    assert (out / "train.json").read_bytes() == before


def test_consistency_term_lowers_heldout_distance(site: dict[str, str], tmp_path: Path) -> None:
    """A model that can be accurate with or without gain invariance: only λ > 0 makes it invariant."""
    gain_only = tmp_path / "gain.toml"
    gain_only.write_text('k = 2\nseed = 3\n[[members]]\nop = "toy.gain"\nlevels = [3.0, 6.0]\n')
    dist = {}
    for lam in (0.0, 5.0):
        out = tmp_path / f"lam{lam}"
        req = _request(out, lam=lam, epochs=20, lr=0.5, use_gate=False)
        req.model, req.neighbourhood = "toy.logfeat", str(gain_only)
        assert run_training(req, _host(), echo=lambda m: None) == 0
        record = json.loads((out / "train.json").read_text())
        dist[lam] = record["heldout_consistency"]["mean_distance"]
    assert dist[5.0] < 0.5 * dist[0.0], dist


def test_interrupted_then_resumed_equals_uninterrupted(site: dict[str, str], tmp_path: Path) -> None:
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    assert run_training(_request(whole, checkpoint_every=2), _host(), echo=lambda m: None) == 0

    def stop_at_7(step: int) -> None:
        if step == 7:
            raise KeyboardInterrupt

    messages: list[str] = []
    code = run_training(_request(broken, checkpoint_every=2), _host(), echo=messages.append, on_step=stop_at_7)
    assert code == 130 and "--resume" in messages[-1]
    assert not (broken / "model.safetensors").exists()
    assert read_checkpoint_meta(broken / "checkpoint")["state"]["global_step"] == 7  # nothing completed is lost
    res = CliRunner().invoke(app, ["train", "--resume", str(broken), "-q"])
    assert res.exit_code == 0, res.output
    a, b = _weights(whole), _weights(broken)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    strip = lambda p: [r.rsplit(",", 1)[0] for r in (p / "history.csv").read_text().splitlines()]  # noqa: E731
    assert strip(whole) == strip(broken)  # every column but seconds


def test_a_seed_repeats_a_run_with_random_initialisation_and_dropout(site: dict[str, str], tmp_path: Path) -> None:
    """With a randomly initialised network that has dropout, the same --seed gives the same
    weights (the initialisation and every step's dropout masks come from the seed, not from the
    process's RNG), another seed others, and an interrupted run resumed ends where an
    uninterrupted one does."""
    def run(name: str, seed: int, **kw: Any) -> Path:
        out = tmp_path / name
        req = _request(out, seed=seed, checkpoint_every=2)
        req.model = "toy.dropout_model"
        assert run_training(req, _host(), echo=lambda m: None, **kw) in (0, 130)
        return out

    torch.manual_seed(123)  # the process's RNG state differs between the runs: it must not matter
    a = run("a", 7)
    torch.rand(5)
    b = run("b", 7)
    c = run("c", 8)
    wa, wb, wc = _weights(a), _weights(b), _weights(c)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)

    def stop_at_5(step: int) -> None:
        if step == 5:
            raise KeyboardInterrupt

    broken = run("broken", 7, on_step=stop_at_5)
    res = CliRunner().invoke(app, ["train", "--resume", str(broken), "-q"])
    assert res.exit_code == 0, res.output
    wr = _weights(broken)
    assert all(torch.equal(wa[k], wr[k]) for k in wa)


def test_cli_bad_options_exit_2_and_write_nothing(site: dict[str, str], tmp_path: Path) -> None:
    runner = CliRunner()
    cases = [
        (["--augment", "mixup"], "--augment"),
        (["--members", "editors"], "no such member"),
        (["--lam-schedule", "step"], "schedule"),
        (["--model", "nope.model"], "--model nope.model"),
        (["--gate", str(tmp_path / "missing.json")], "missing.json"),
    ]
    for args, needle in cases:
        out = tmp_path / f"bad{len(args[0])}{len(args[1])}"
        res = runner.invoke(app, ["train", "-m", "toy", "--epochs", "1", "--out", str(out), *args])
        assert res.exit_code == 2, (args, res.output)
        assert needle in res.output, (args, res.output)
        assert not (out / "train.json").exists() and not (out / "checkpoint").exists()
    res = runner.invoke(app, ["train", "--resume", str(tmp_path / "nothing")])
    assert res.exit_code == 2 and "nothing to resume" in res.output
    res = runner.invoke(app, ["train", "--resume", str(tmp_path), "--epochs", "3"])
    assert res.exit_code == 2 and "drop --epochs" in res.output


def test_gate_file_from_calibrate_is_what_train_uses(site: dict[str, str], tmp_path: Path) -> None:
    gate = tmp_path / "gate.json"
    gate.write_text(json.dumps({"delta": 0.05, "tau": 0.9}))
    assert GateSettings.from_file(gate) == GateSettings(delta=0.05, tau=0.9)
    out = tmp_path / "run"
    req = _request(out, epochs=1)
    req.gate_file = str(gate)
    assert run_training(req, _host(), echo=lambda m: None) == 0
    assert json.loads((out / "train.json").read_text())["gate"]["delta"] == 0.05


def test_save_weights_loads_with_the_safe_loader(tmp_path: Path) -> None:
    from c3_core.model import load_state_dict_safely

    net = torch.nn.Linear(3, 2)
    save_weights(tmp_path / "w.safetensors", net, {"architecture": '"x"'})
    twin = torch.nn.Linear(3, 2)
    load_state_dict_safely(tmp_path / "w.safetensors", twin)
    assert torch.equal(net.weight, twin.weight)


# -- distributed --------------------------------------------------------------------------------
DDP_SCRIPT = r'''
import json, os, sys
import torch
sys.path.insert(0, sys.argv[2])
from toy_plugin import ToyDataset, make_model, ToyGain, ToyNoise
from c3_core.evaluation.distributed import ProcessGroup
from c3_core.neighbourhood import Neighbourhood, NeighbourhoodSpec
from c3_core.training.trainer import Trainer, TrainOptions

spec = NeighbourhoodSpec.from_toml_string(sys.argv[3])
ops = {"toy.gain": ToyGain, "toy.noise": ToyNoise}
nb = Neighbourhood(spec, lambda op_id, options: ops[op_id]())
group = ProcessGroup.from_environment("cpu")
batch = 8 // group.world
bundle = make_model()
opts = TrainOptions(epochs=1, batch_size=batch, lr=0.05, augment="none", lam=2.0, seed=1)
trainer = Trainer(bundle, ToyDataset(n=8, seed=1), nb, opts, group=group)
trainer.fit()
assert trainer._ddp is None, "fit() must drop its DDP wrapper before the group closes (gloo aborts at exit otherwise)"
if group.leader:
    net = bundle.network
    json.dump({"weights": {k: v.tolist() for k, v in net.state_dict().items()},
               "grads": {k: p.grad.tolist() for k, p in net.named_parameters()}}, open(sys.argv[1], "w"))
group.close()
'''


def test_two_gloo_processes_take_the_single_process_step(tmp_path: Path) -> None:
    script = tmp_path / "ddp_step.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, str(script), str(tmp_path / "one.json"), str(TESTS), SPEC], env=env,
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    two = subprocess.run([*torchrun, str(script), str(tmp_path / "two.json"), str(TESTS), SPEC], env=env,
                         capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = (json.loads((tmp_path / f).read_text()) for f in ("one.json", "two.json"))
    for part in ("grads", "weights"):
        for key in a[part]:
            x, y = torch.tensor(a[part][key]), torch.tensor(b[part][key])
            assert torch.allclose(x, y, rtol=1e-5, atol=1e-6), (part, key, x, y)
    g = torch.tensor(a["grads"]["linear.weight"])
    assert float(g.abs().max()) > 0 and math.isfinite(float(g.sum()))



# -- the Python API in a plain loop -------------------------------------------------------------
def test_dataset_wrapper_matches_the_trainer_draws_and_feeds_a_plain_loop() -> None:
    from torch.utils.data import DataLoader
    from toy_plugin import ToyDataset, ToyGain, ToyNoise, make_model

    from c3_core.batch import collate
    from c3_core.losses import ConsistencyObjective, distance_for_task
    from c3_core.neighbourhood import Neighbourhood, NeighbourhoodSpec
    from c3_core.training.dataset import CounterfactualDataset, collate_counterfactuals, epoch_neighbourhood

    ops = {"toy.gain": ToyGain, "toy.noise": ToyNoise}
    nb = Neighbourhood(NeighbourhoodSpec.from_toml_string(SPEC), lambda op_id, options: ops[op_id]())
    base = ToyDataset(n=8, seed=1)
    wrapped = CounterfactualDataset(base, nb, epoch=3)
    x, cf, rejections = collate_counterfactuals([wrapped[i] for i in range(8)])
    batched, _, _ = epoch_neighbourhood(nb, 3).draw(collate([base[i] for i in range(8)]))
    assert cf.image.shape == (8 * nb.k, *x.image.shape[1:]) and torch.equal(cf.image, batched.image)
    assert rejections == [[None] * nb.k] * 8
    wrapped.set_epoch(4)
    assert not torch.equal(collate_counterfactuals([wrapped[0]])[1].image, cf.image[: nb.k])  # fresh each epoch

    bundle = make_model()
    objective = ConsistencyObjective(torch.nn.CrossEntropyLoss(), distance_for_task("multiclass", reduction="none"), lam=1.0)
    opt = torch.optim.SGD(bundle.network.parameters(), lr=0.01)
    losses = []
    for _ in range(5):
        for xb, cfb, _ in DataLoader(wrapped, batch_size=4, collate_fn=collate_counterfactuals):
            out = bundle.network(torch.cat([xb.image, cfb.image]))
            terms = objective(out[:4], xb.label, out[4:].view(4, nb.k, -1))
            opt.zero_grad()
            terms.total.backward()
            opt.step()
            losses.append(float(terms.total.detach()))
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("warmup", [0.0, 2.0])
def test_augmix_jsd_weight_ramps_in_with_the_consistency_warmup(warmup: float) -> None:
    """One step per epoch: with a 2-epoch linear warm-up the JSD term weighs 0 at the first step
    and half at the second; without one it weighs ``jsd_weight`` from the start."""
    from toy_plugin import ToyDataset, make_model

    from c3_core.training.trainer import Trainer, TrainOptions

    ds = ToyDataset(n=8, seed=1)
    options = TrainOptions(epochs=2, batch_size=8, augment="augmix", lam=0.0, lam_shape="linear",
                           lam_warmup_epochs=warmup, seed=3)  # fmt: skip
    history = Trainer(make_model(), ds, None, options, echo=lambda m: None).fit()
    assert len(history) == 2 and all(h["jsd"] > 0 for h in history)
    with pytest.raises(ValueError, match="lam-schedule"):  # a constant schedule would ignore the warm-up
        TrainOptions(augment="augmix", lam_warmup_epochs=2.0)
    ramps = (0.0, 0.5) if warmup else (1.0, 1.0)
    for h, ramp in zip(history, ramps, strict=True):
        assert h["loss"] == pytest.approx(h["supervised"] + options.jsd_weight * ramp * h["jsd"], rel=1e-5, abs=1e-7)
