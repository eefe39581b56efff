"""Evaluation at cohort scale: throughput, peak memory and the overhead of C3 over bare forwards.

For synthetic cohorts of small radiographs (1 x 64 x 64; ``--image-size`` sets the side), five
findings, the c3-cxr default neighbourhood with K counterfactuals, four passes over the same cases,
each in its own process:

* **bare**: the DataLoader and the model's forward on the (K+1)·B inputs of every batch, nothing
  else (what any robustness evaluation must pay);
* **c3**: the real evaluation (``run_modality`` + ``finish_modality``): neighbourhood planning and
  operators, the gate, scoring, per-batch SQLite commits and the final metrics with bootstrap CIs.
* **host**: the same real evaluation with a model whose forward is free (zero logits): the host
  work alone (planning, operators, gate, scoring, provenance, SQLite), which is what limits a GPU.
* **data**: the evaluation's own data path alone (its DataLoader over the cases, the guarded
  collate with the finiteness check, the move to the device), nothing else: what the host work
  pays before C3 does anything, and what the bare pass pays too.

Each pass first runs one batch through the same path untimed (imports, allocator warm-up). Each
size runs ``--passes`` rounds (default 3) of the four passes, interleaved; the table gives the
medians (the bare pass alone varies by ~10 % between processes on the 2-core machine, enough to
move a single overhead number by that much) and the range of the rounds' overheads.
Printed per cohort size: cases per second, peak resident memory of each process (it should stay
flat as the cohort grows: cases stream), overhead = (t_c3 - t_bare) / t_bare, the extra time per
case (t_c3 - t_bare) / n, the host work alone per case t_host / n (target <= 0.3 ms at K = 8) and
the 1-minute load average (numbers taken on a loaded machine are not comparable).
A fourth pass (``--kernels``, on by default, the first 1,000 cases) splits the host work: each
operator's ``apply`` is timed where the evaluation calls it, on the sub-batch it gets, and beside
it that operator's physical floor on the same sub-batch (the floors of ``plugins/cxr/bench/bench_cxr.py``:
a clone, the FFTs, the draws, the interpolation). Printed per operator in ms per case: the kernels,
their floors, and what is left of the host work (planning, scoring, provenance, store, summary).
It also prints the host work's measured floor at this size: the data pass plus each operator's
floor (or its apply, where that is lower), and what the 0.3 ms target would leave, per
counterfactual, for everything else (planning, gate, scoring, provenance, the store, the summary).
A fifth pass (``--phases N``, off by default) runs the host-mode evaluation of N cases with each
phase's calls wrapped in a clock (planning, realising with the operators' ``apply`` inside it,
scoring with provenance inside it, the store's commits, the summary) and prints ms per case.
A sixth pass (``--ablation N``, off by default) is an ablation of the host work: the host-mode
evaluation of N cases as it is, with the operators made free (``apply`` returns its input), with
planning and the records made free (the first batch's plans reused; no provenance JSON, no
counterfactual row stored), and with all three free, in interleaved rounds, each in its own
process. What remains with all three free, plus each operator at its floor from the kernel pass,
is a lower bound on the host work of any version that keeps this loop; the pass prints it and
what the 0.3 ms target leaves, per counterfactual, for planning and records.
Every pass runs with ``malloc`` keeping freed memory (``c3_core.allocator``), as the ``c3``
command line runs; ``--system-malloc`` leaves glibc's default in every pass (the A/B).
Run: ``nox -s bench -- evaluation`` (add ``--quick`` for a smoke run, ``--device cuda`` on a GPU).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TARGET_OVERHEAD = 0.25
TARGET_HOST_MS = 0.3  # host work per case at K = 8 (issue 18)
FINDINGS = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")


def _cohort(n: int, size: int) -> Any:
    """A map-style dataset of ``n`` synthetic chest-like log-attenuation images (deterministic)."""
    import torch
    from torch.utils.data import Dataset

    from c3_core.batch import Sample
    from c3_core.seeding import generator_from_seed

    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    lungs = ((xx.abs() - 0.45) ** 2 / 0.09 + yy**2 / 0.5 < 1).float()
    anatomy = 1.2 - 0.7 * lungs  # the same for every case: made once (the data's cost is not C3's)

    class SyntheticChests(Dataset):
        def __len__(self) -> int:
            return n

        def __getitem__(self, i: int) -> Sample:
            g = generator_from_seed(10_000 + i)
            mu = anatomy + 0.05 * torch.randn((size, size), generator=g)
            label = (torch.rand(len(FINDINGS), generator=g) < 0.3).float()
            return Sample(mu.unsqueeze(0), f"bench-{i:06d}", "cxr", "log_attenuation", (0.5, 0.5), label)

    return SyntheticChests()


def _prepared(n: int, k: int, device: str, free: bool = False, size: int = 64) -> Any:
    """A PreparedModality for the synthetic cohort with a small CNN (``free``: a model whose forward
    costs nothing) and the c3-cxr neighbourhood."""
    import torch

    from c3_core.evaluation.runner import PreparedModality, resolve_resource
    from c3_core.model import ModelBundle
    from c3_core.neighbourhood import Neighbourhood, NeighbourhoodSpec
    from c3_core.plugins.host import PluginHost
    from c3_core.pseudonyms import Pseudonymiser
    from c3_core.reference_models import SmallCNN

    host = PluginHost().load()
    spec = NeighbourhoodSpec.from_toml(resolve_resource("c3_cxr:neighbourhoods/default.toml")).with_overrides(k=k)
    torch.manual_seed(0)
    net = SmallCNN(1, len(FINDINGS)).to(device)
    bundle = ModelBundle(net, "multilabel", FINDINGS, "log_attenuation", name="bench.smallcnn")
    if free:
        bundle = ModelBundle(_FreeForward(len(FINDINGS)).to(device), "multilabel", FINDINGS, "log_attenuation", name="bench.free")
    prepared = PreparedModality("cxr", "bench.synthetic", _cohort(n, size), n, spec, Neighbourhood(spec, host.make_operator),
                                bundle, "bench.smallcnn", None, None)
    prepared.pseudonymise = Pseudonymiser(b"bench-key-not-secret-0123456789")  # evaluation writes pseudonyms only
    return prepared


def _free_forward_class() -> Any:
    import torch

    class FreeForward(torch.nn.Module):
        """A model whose forward costs nothing: zero logits of the right shape (host work alone)."""

        def __init__(self, n_outputs: int) -> None:
            super().__init__()
            self.n_outputs = n_outputs
            self.anchor = torch.nn.Parameter(torch.zeros(1))  # a parameter, so .to(device) and hashing work

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.new_zeros(x.shape[0], self.n_outputs)

    return FreeForward


def _FreeForward(n_outputs: int) -> Any:  # noqa: N802 - reads as the class it builds
    return _free_forward_class()(n_outputs)


def _one(mode: str, n: int, k: int, batch_size: int, device: str, size: int) -> dict[str, Any]:
    """One pass in this process; returns seconds and peak RSS (MiB)."""
    import torch
    from torch.utils.data import DataLoader

    from c3_core.batch import collate
    from c3_core.evaluation.runner import finish_modality, run_modality
    from c3_core.evaluation.scoring import GateSettings
    from c3_core.evaluation.store import ResultStore

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    mode, _, freed = mode.partition(":")
    if freed:
        _make_free(freed.split(","))
    free = mode == "host"  # the real evaluation with a model whose forward is free: host work alone
    p = _prepared(n, k, device, free, size)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    if mode == "data":
        return {"mode": mode, "n": n, "seconds": _data_pass(p, batch_size, device, sync), "peak_mib": _peak_mib()}
    with tempfile.TemporaryDirectory() as tmp:
        # warm-up outside the timing (first-call imports, kernel and allocator set-up): one
        # batch through the same path
        warm = _prepared(batch_size, k, device, free, size)
        if mode == "bare":
            with torch.no_grad():
                x = collate([warm.dataset[i] for i in range(batch_size)]).image.to(device)
                warm.bundle.logits(torch.cat([x] * (k + 1), 0))
        else:
            warm_store = ResultStore(Path(tmp) / "warm.sqlite", create=True)
            run_modality(warm, warm_store, gate=GateSettings(), device=device, batch_size=batch_size)
            finish_modality(warm, warm_store, 0.0)
            warm_store.close()
        sync()
        if mode == "bare":
            loader = DataLoader(p.dataset, batch_size=batch_size, collate_fn=collate)
            t0 = time.perf_counter()
            with torch.no_grad():
                for batch in loader:
                    x = batch.image.to(device)
                    p.bundle.probabilities(p.bundle.logits(torch.cat([x] * (k + 1), 0)))
            sync()
            seconds = time.perf_counter() - t0
        else:
            store = ResultStore(Path(tmp) / "results.sqlite", create=True)
            t0 = time.perf_counter()
            run_modality(p, store, gate=GateSettings(), device=device, batch_size=batch_size)
            sync()
            run = finish_modality(p, store, 0.0)
            seconds = time.perf_counter() - t0
            store.close()
            assert run.summary["n_cases"] == n
    return {"mode": mode, "n": n, "seconds": seconds, "peak_mib": _peak_mib()}


ABLATIONS = (  # (label, parts made free) of the ablation pass, each a host-mode evaluation
    ("as it is", ""),
    ("operators free", "operators"),
    ("planning and records free", "planning,records"),
    ("all three free", "operators,planning,records"),
)


def _make_free(parts: list[str]) -> None:
    """Make parts of the host work cost (almost) nothing, in this process only (the ablation pass):
    ``operators``: each operator's ``apply`` returns its input (the rows are still gathered and
    scattered around it, and each operator's check still runs); ``planning``: a neighbourhood
    plans the first batch of each size once and returns those plans again for every batch of that
    size; ``records``: no provenance JSON is written (a constant stands in) and no counterfactual
    row is stored, so the summary reads none. What remains is what C3 pays besides its physics
    and its records: the data, the gathers and scatters, the gate and scores, the case rows and
    their store, the summary."""
    from c3_core.evaluation import scoring, store
    from c3_core.neighbourhood import Neighbourhood
    from c3_core.operator import Operator

    unknown = set(parts) - {"operators", "planning", "records"}
    if unknown:
        raise ValueError(f"cannot make {sorted(unknown)} free")
    if "operators" in parts:
        Operator.apply = lambda self, batch, params: batch  # type: ignore[method-assign]
    if "planning" in parts:
        plan = Neighbourhood.plan
        planned: dict[tuple[int, int], Any] = {}

        def reused(self: Any, batch: Any) -> Any:
            key = (id(self), batch.size)
            if key not in planned:
                planned[key] = plan(self, batch)
            return planned[key]

        Neighbourhood.plan = reused  # type: ignore[method-assign]
    if "records" in parts:
        scoring._ProvenanceWriter.__call__ = (  # type: ignore[method-assign]
            lambda self, plan, written_id: ("", plan.steps[0].operator.id, plan.steps[0].severity, "{}"))
        commit = store.ResultStore.commit_batch

        def without_counterfactuals(self: Any, modality: str, results: Any, failures: Any) -> None:
            commit(self, modality, [store.CaseResult(r.idx, r.case, ()) for r in results], failures)

        store.ResultStore.commit_batch = without_counterfactuals  # type: ignore[method-assign]


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _data_pass(p: Any, batch_size: int, device: str, sync: Any) -> float:
    """Seconds for the evaluation's data path alone over ``p``'s cases: ``run_modality``'s
    DataLoader (guarded cases, guarded collate with its finiteness check) and the move to the
    device, after one untimed batch."""
    from torch.utils.data import DataLoader

    from c3_core.evaluation.runner import _collate_guarded, _GuardedCases

    def loader(indices: Any) -> Any:
        return DataLoader(_GuardedCases(p.dataset, indices), batch_size=batch_size, shuffle=False,
                          collate_fn=_collate_guarded, pin_memory=device.startswith("cuda"))

    for _, batch, _ in loader(range(min(batch_size, p.n))):  # warm-up
        batch.to(device)
    sync()
    t0 = time.perf_counter()
    for _, batch, _ in loader(range(p.n)):
        if batch is not None:
            batch.to(device)
    sync()
    return time.perf_counter() - t0


def _kernels(n: int, k: int, batch_size: int, device: str, size: int) -> dict[str, Any]:
    """Plan and realise the first ``n`` cases as the evaluation does, timing each operator's
    ``apply`` on its sub-batch and that operator's floor on the same sub-batch (one call each)."""
    import torch

    from c3_core.batch import collate

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    from operator_floors import operator_floors

    floors = operator_floors("cxr")
    p = _prepared(n, k, device, size=size)
    nb = p.neighbourhood
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    per_op: dict[str, list[float]] = {}  # id -> [apply s, floor s, calls, rows]
    timing = {"on": False}

    def timed(cls: Any) -> None:
        inner = cls.apply

        def apply(self: Any, batch: Any, params: Any) -> Any:
            if not timing["on"]:
                return inner(self, batch, params)
            sync()
            t0 = time.perf_counter()
            out = inner(self, batch, params)
            sync()
            t1 = time.perf_counter()
            fractions = [q.dose_fraction for q in params if hasattr(q, "dose_fraction")]  # the counts of a photon floor
            floor = floors[self.id](self, sum(fractions) / len(fractions) if fractions else 0.0)
            state = batch if floor.prepare is None else floor.prepare(batch)
            sync()
            t2 = time.perf_counter()
            floor.work(state)
            sync()
            row = per_op.setdefault(self.id, [0.0, 0.0, 0, 0])
            row[0] += t1 - t0
            row[1] += time.perf_counter() - t2
            row[2] += 1
            row[3] += batch.size
            return out

        cls.apply = apply

    for cls in {type(op) for op in nb.operators()}:  # this process only: the pass is its own process
        timed(cls)
    batches = [collate([p.dataset[i] for i in range(j, min(j + batch_size, n))]).to(device) for j in range(0, n, batch_size)]
    nb.realise(batches[0], nb.plan(batches[0]))  # warm-up
    timing["on"] = True
    t0 = time.perf_counter()
    for b in batches:
        nb.realise(b, nb.plan(b))
    sync()
    total = time.perf_counter() - t0
    return {"n": n, "seconds": total, "operators": per_op}


PHASES = (  # (label, module, attribute path): what the phase pass wraps, outermost first within a phase
    ("plan", "c3_core.neighbourhood", "Neighbourhood.plan"),
    ("realise (with kernels)", "c3_core.neighbourhood", "Neighbourhood._realise"),
    ("  of which operator apply", "c3_core.operator", "Operator.apply"),
    ("score", "c3_core.evaluation.runner", "score_batch"),
    ("  of which provenance", "c3_core.evaluation.scoring", "_ProvenanceWriter.__call__"),
    ("store commit", "c3_core.evaluation.store", "ResultStore.commit_batch"),
)


def _phases(n: int, k: int, batch_size: int, device: str, size: int) -> dict[str, Any]:
    """The host-mode evaluation of ``n`` cases with each phase of :data:`PHASES` wrapped in a
    clock, then the summary: seconds per phase, the loop's total and the summary's."""
    import importlib

    import torch

    from c3_core.evaluation.runner import finish_modality, run_modality
    from c3_core.evaluation.scoring import GateSettings
    from c3_core.evaluation.store import ResultStore

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    spent: dict[str, float] = {label: 0.0 for label, _, _ in PHASES}
    calls: dict[str, int] = dict.fromkeys(spent, 0)

    def clocked(label: str, inner: Any) -> Any:
        def call(*a: Any, **kw: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return inner(*a, **kw)
            finally:
                spent[label] += time.perf_counter() - t0
                calls[label] += 1
        return call

    for label, module, path in PHASES:  # this process only: the pass is its own process
        owner: Any = importlib.import_module(module)
        *outer, name = path.split(".")
        for part in outer:
            owner = getattr(owner, part)
        setattr(owner, name, clocked(label, getattr(owner, name)))
    with tempfile.TemporaryDirectory() as tmp:
        warm = _prepared(batch_size, k, device, True, size)
        store = ResultStore(Path(tmp) / "warm.sqlite", create=True)
        run_modality(warm, store, gate=GateSettings(), device=device, batch_size=batch_size)
        store.close()
        spent.update(dict.fromkeys(spent, 0.0))
        p = _prepared(n, k, device, True, size)
        store = ResultStore(Path(tmp) / "results.sqlite", create=True)
        t0 = time.perf_counter()
        run_modality(p, store, gate=GateSettings(), device=device, batch_size=batch_size)
        t1 = time.perf_counter()
        finish_modality(p, store, 0.0)
        t2 = time.perf_counter()
        store.close()
    never = [f"{path} ({label.strip()})" for label, _, path in PHASES if not calls[label]]
    if never:  # a renamed or bypassed function would print a phase of 0 ms
        raise RuntimeError(f"the phase pass wrapped {', '.join(never)}, which the evaluation never called: "
                           "update PHASES to the functions it calls now")
    return {"n": n, "loop": t1 - t0, "summary": t2 - t1, "phases": spent}


def _print_phases(res: dict[str, Any]) -> None:
    n, ph = res["n"], res["phases"]
    print(f"\nhost work by phase (host mode, {n} cases, each phase's calls wrapped in a clock):")
    for label, _, _ in PHASES:
        print(f"  {label:<28} {1000 * ph[label] / n:>7.3f} ms per case")
    top = sum(ph[label] for label, _, _ in PHASES if not label.startswith(" "))
    print(f"  {'data loading and the rest':<28} {1000 * (res['loop'] - top) / n:>7.3f} ms per case")
    print(f"  {'summary':<28} {1000 * res['summary'] / n:>7.3f} ms per case")
    print(f"  {'total':<28} {1000 * (res['loop'] + res['summary']) / n:>7.3f} ms per case (load {os.getloadavg()[0]:.1f})")


def _kernel_totals(res: dict[str, Any]) -> tuple[float, float, float]:
    """The kernel pass's ms per case: every apply, every floor, and each operator's floor or its
    apply where that is lower."""
    ops = res["operators"].values()
    n = res["n"]
    return (1000 * sum(a for a, _, _, _ in ops) / n, 1000 * sum(f for _, f, _, _ in ops) / n,
            1000 * sum(min(a, f) for a, f, _, _ in ops) / n)


def _print_kernels(res: dict[str, Any], host: tuple[float, float] | None, k: int) -> None:
    """The kernel pass's table; with ``host`` = (host work alone, data alone) in ms per case at the
    same size, the rest of the host work and the host work's measured floor."""
    n = res["n"]
    print(f"\noperator kernels where the evaluation calls them (first {n} cases, each apply and its floor timed on the same sub-batch):")
    print(f"{'operator':<20} {'calls':>6} {'rows/call':>9} {'apply ms/case':>14} {'floor ms/case':>14} {'ratio':>6}")
    for op_id, (a, f, calls, rows) in sorted(res["operators"].items(), key=lambda kv: -kv[1][0]):
        print(f"{op_id:<20} {calls:>6} {rows / calls:>9.1f} {1000 * a / n:>14.3f} {1000 * f / n:>14.3f} {a / f:>6.1f}")
    kernels_ms, floors_ms, lower_ms = _kernel_totals(res)
    print(f"{'all kernels':<20} {'':>6} {'':>9} {kernels_ms:>14.3f} {floors_ms:>14.3f} {kernels_ms / floors_ms:>6.1f}")
    print(f"plan + realise (kernels, grouping, copies): {1000 * res['seconds'] / n:.3f} ms per case (timing adds the floors' time)")
    if host is None:
        return
    host_ms, data_ms = host
    rest_ms = host_ms - data_ms - kernels_ms
    print(f"host work alone {host_ms:.3f} ms per case = data {data_ms:.3f} + kernels {kernels_ms:.3f} + the rest {rest_ms:.3f} "
          f"(planning, grouping, gate, scoring, provenance, store and summary: {1000 * rest_ms / k:.1f} us per counterfactual); "
          f"load {os.getloadavg()[0]:.1f}")
    floor_ms = data_ms + lower_ms
    left_ms = TARGET_HOST_MS - floor_ms
    print(f"host work floor at this size: data {data_ms:.3f} + each operator at its floor (or its apply, where lower) "
          f"{lower_ms:.3f} = {floor_ms:.3f} ms per case; the {TARGET_HOST_MS} ms target leaves {left_ms:.3f} ms per case, "
          f"{1000 * left_ms / k:.1f} us per counterfactual, for the rest ({1000 * rest_ms / k:.1f} us here)")


def _in_own_process(mode: str, n: int, args: argparse.Namespace) -> dict[str, Any] | None:
    """Run pass ``mode`` on ``n`` cases in a fresh process; its result, or None (its stderr
    printed) when it failed."""
    cmd = [sys.executable, __file__, "--one", mode, str(n), "--k", str(args.k),
           "--batch-size", str(args.batch_size), "--device", args.device, "--image-size", str(args.image_size),
           *(["--system-malloc"] if args.system_malloc else [])]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        print(out.stderr[-3000:], file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000", help="comma-separated cohort sizes")
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--image-size", type=int, default=64, help="side of the square synthetic radiographs, pixels (default 64)")
    ap.add_argument("--system-malloc", action="store_true",
                    help="leave glibc's malloc as it is in every pass (default: keep freed memory, as the c3 command line does)")
    ap.add_argument("--quick", action="store_true", help="tiny cohorts (smoke run)")
    ap.add_argument("--kernels", type=int, default=1000, help="cases of the per-operator kernel pass (0: skip it)")
    ap.add_argument("--phases", type=int, default=0, help="cases of the pass that clocks each phase of the host work (0: skip it)")
    ap.add_argument("--ablation", type=int, default=0,
                    help="cases of the ablation pass: the host work with the operators, planning and records made free (0: skip it)")
    ap.add_argument("--passes", type=int, default=3,
                    help="rounds of the bare / c3 / host / data passes per size, interleaved; medians printed (default 3)")
    ap.add_argument("--one", nargs=2, metavar=("MODE", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        if not args.system_malloc:
            from c3_core.allocator import keep_freed_memory

            keep_freed_memory()  # as the c3 command line does for its process
        mode, n = args.one[0], int(args.one[1])
        run = {"kernels": _kernels, "phases": _phases}.get(mode, lambda *a: _one(mode, *a))
        res = run(n, args.k, args.batch_size, args.device, args.image_size)
        print(json.dumps(res))
        return 0
    sizes = [64, 256] if args.quick else [int(s) for s in args.sizes.split(",")]
    print(f"evaluation benchmark: 1x{args.image_size}x{args.image_size} cases, K={args.k}, batch {args.batch_size}, device {args.device}, "
          f"malloc {'as the system has it' if args.system_malloc else 'keeping freed memory (c3_core.allocator, as the c3 command line)'}, "
          f"threads {os.environ.get('OMP_NUM_THREADS', '2')}")
    passes = 1 if args.quick else max(1, args.passes)
    print(f"each size: {passes} round(s) of the bare, c3, host and data passes, interleaved, each in its own process; "
          "times are the medians over rounds, memory the largest peak, overhead range the rounds' (bare_i, c3_i) pairs")
    header = (f"{'cases':>7} {'bare s':>8} {'c3 s':>8} {'c3 cases/s':>11} {'bare MiB':>9} {'c3 MiB':>8} {'overhead':>9} "
              f"{'overhead range':>15} {'c3-bare ms/case':>16} {'host alone ms/case':>19} {'data alone ms/case':>19} {'load':>5}")
    print(header)
    rows = []
    for n in sizes:
        runs: dict[str, list[dict[str, Any]]] = {"bare": [], "c3": [], "host": [], "data": []}
        for _ in range(passes):  # interleaved, so drift on a shared machine hits the four alike
            for mode in runs:
                one = _in_own_process(mode, n, args)
                if one is None:
                    return 1
                runs[mode].append(one)
        res = {mode: {"seconds": statistics.median(r["seconds"] for r in rs), "peak_mib": max(r["peak_mib"] for r in rs)}
               for mode, rs in runs.items()}
        overhead = (res["c3"]["seconds"] - res["bare"]["seconds"]) / res["bare"]["seconds"]
        each = [(c["seconds"] - b["seconds"]) / b["seconds"] for b, c in zip(runs["bare"], runs["c3"])]
        spread = f"{min(each):.0%}..{max(each):.0%}"
        extra_ms = 1000 * (res["c3"]["seconds"] - res["bare"]["seconds"]) / n
        host_ms = 1000 * res["host"]["seconds"] / n
        data_ms = 1000 * res["data"]["seconds"] / n
        rows.append((n, res, overhead, host_ms, data_ms))
        print(f"{n:>7} {res['bare']['seconds']:>8.1f} {res['c3']['seconds']:>8.1f} {n / res['c3']['seconds']:>11.1f} "
              f"{res['bare']['peak_mib']:>9.0f} {res['c3']['peak_mib']:>8.0f} {overhead:>8.0%} {spread:>15} "
              f"{extra_ms:>16.3f} {host_ms:>19.3f} {data_ms:>19.3f} {os.getloadavg()[0]:>5.1f}")
    worst = max(r[2] for r in rows)
    worst_host = max(r[3] for r in rows)
    print(f"host work alone (a model whose forward is free) target <= {TARGET_HOST_MS} ms per case: "
          f"{'PASS' if worst_host <= TARGET_HOST_MS else 'FAIL'} (worst {worst_host:.3f} ms)")
    growth = rows[-1][1]["c3"]["peak_mib"] / rows[0][1]["c3"]["peak_mib"]
    print(f"overhead target <= {TARGET_OVERHEAD:.0%}: {'PASS' if worst <= TARGET_OVERHEAD else 'FAIL'} (worst {worst:.0%})")
    print(f"peak memory {sizes[0]} -> {sizes[-1]} cases: x{growth:.2f} ({'flat' if growth < 1.25 else 'GROWS'})")
    n_kernels = min(args.kernels, 64) if args.quick else args.kernels
    if n_kernels > 0:
        kernels = _in_own_process("kernels", n_kernels, args)
        if kernels is None:
            return 1
        same = [(r[3], r[4]) for r in rows if r[0] == n_kernels]
        _print_kernels(kernels, same[0] if same else None, args.k)
    if args.phases > 0:
        phases = _in_own_process("phases", args.phases, args)
        if phases is None:
            return 1
        _print_phases(phases)
    if args.ablation > 0:
        n_ab = min(args.ablation, 256) if args.quick else args.ablation
        ablation: dict[str, list[float]] = {label: [] for label, _ in ABLATIONS}
        for _ in range(passes):  # interleaved, like the size rounds
            for label, parts in ABLATIONS:
                one = _in_own_process(f"host:{parts}" if parts else "host", n_ab, args)
                if one is None:
                    return 1
                ablation[label].append(one["seconds"])
        floors = _kernel_totals(kernels)[2] if n_kernels > 0 else None
        _print_ablation(n_ab, {label: statistics.median(ts) for label, ts in ablation.items()}, passes, floors, args.k)
    return 0


def _print_ablation(n: int, seconds: dict[str, float], rounds: int, floor_ms: float | None, k: int) -> None:
    """The ablation pass's table and, with the kernel pass's floors, the host work's lower bound."""
    print(f"\nablation: the host work (host mode, {n} cases, medians of {rounds} round(s), each in its own process) "
          "with parts of it made free (operators: apply returns its input; planning: the first batch's plans "
          "reused; records: no provenance JSON, no counterfactual row stored)")
    ms = {label: 1000 * t / n for label, t in seconds.items()}
    for label, _ in ABLATIONS:
        print(f"  {label:<28} {ms[label]:>7.3f} ms per case")
    base, free_all = ms[ABLATIONS[0][0]], ms[ABLATIONS[-1][0]]
    records = base - ms[ABLATIONS[2][0]]
    print(f"  planning and records cost {records:.3f} ms per case ({1000 * records / k:.1f} us per counterfactual); "
          f"with all three free {free_all:.3f} ms per case remain (load {os.getloadavg()[0]:.1f})")
    if floor_ms is None:
        return
    bound = free_all + floor_ms
    left = TARGET_HOST_MS - bound
    print(f"  lower bound with every operator at its floor (kernel pass, or its apply where lower): {free_all:.3f} + "
          f"{floor_ms:.3f} = {bound:.3f} ms per case before any plan or record; the {TARGET_HOST_MS} ms target leaves "
          f"{left:.3f} ms per case, {1000 * left / k:.1f} us per counterfactual, for planning and records "
          f"({1000 * records / k:.1f} us here; host work as it is {base:.3f} ms per case)")


if __name__ == "__main__":
    sys.exit(main())
