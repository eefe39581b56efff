#!/usr/bin/env python
"""Hash every registered physics operator's output on fixed inputs, severities and seeds.

For each operator of every loaded plugin and each spatial dimensionality it supports, the input
is the first two samples of its modality's demo dataset (the conformance kit's default; for a 2-D
operator on a 3-D demo, its middle slice), or for
``ct`` the kit's CT test batch (pydicom CT_small + Shepp–Logan, as plugins/cxr/tests uses). Params
are drawn with ``generator_from_seed(SEED)`` at the operator's middle severity level and at its
extreme; the output image's raw bytes are hashed with SHA-256. Printed as JSON::

    {operator id: {"version": "2", "sha256": {"2d@0.25": "…", "2d@0.05": "…"}}}

Use it before and after a kernel change: an operator whose hashes changed must bump ``version``.
``--compare before.json`` hashes at the severities recorded there (so a changed severity range does
not count as a changed output) and prints the changed operators and whether each bumped its
version (exit status 1 if one did not). Runs on CPU with a fixed thread count, so hashes are comparable across
runs on the same machine and torch build.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from typing import Any

import torch

SEED = 20240518
THREADS = 2


def _middle_slice(b: Any) -> Any:
    """The middle axial slice of a 3-D batch as a 2-D batch (spacing, mask and extras sliced alike)."""
    mid = b.image.shape[2] // 2

    def cut(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t[:, :, mid].contiguous()

    return b.replace(
        image=cut(b.image),
        spacing=tuple(s[1:] for s in b.spacing),
        mask=cut(b.mask),
        extras={k: cut(v) for k, v in b.extras.items()},
    )


def _batch_factory(host: Any) -> Any:
    from c3_core.batch import collate

    cache: dict[tuple[str, int], Any] = {}

    def factory(modality: str, dims: int) -> Any | None:
        key = (modality, dims)
        if key in cache:
            return cache[key]
        batch = None
        if modality == "ct":
            try:
                from c3_cxr.data.ct_examples import ct_batch

                batch = ct_batch(dims)
            except ImportError:
                batch = None
        else:
            try:
                ds = host.demo_dataset(modality).load()(split="test")
                b = collate([ds[i] for i in range(min(2, len(ds)))])
                if b.spatial_dims == dims:
                    batch = b
                elif b.spatial_dims == 3 and dims == 2:
                    batch = _middle_slice(b)
            except Exception:  # noqa: BLE001 - no demo for this modality: the operator is listed as skipped
                batch = None
        cache[key] = batch
        return batch

    return factory


def operator_hashes(severities_from: dict[str, Any] | None = None) -> dict[str, Any]:
    """{operator id: {"version", "sha256": {"<dims>d@<severity>": hex digest}}} for every registered operator.

    Severities: the middle level and the extreme of each operator, or those of ``severities_from``
    (an earlier result) for the operators it has.
    """
    from c3_core.plugins.host import PluginHost
    from c3_core.seeding import generator_from_seed

    torch.set_num_threads(THREADS)
    host = PluginHost().load()
    factory = _batch_factory(host)
    out: dict[str, Any] = {}
    for c in sorted(host.registry("operators"), key=lambda c: c.id):
        cls = c.load()
        op = cls()
        levels = list(op.severity.levels)
        severities = [levels[len(levels) // 2], op.severity.extreme]
        if severities_from is not None and c.id in severities_from:
            keys = [k.split("@", 1)[1] for k in severities_from[c.id]["sha256"] if "@" in k]
            severities = [float(k) for k in dict.fromkeys(keys)]
        hashes: dict[str, str] = {}
        for dims in op.spatial_dims:
            batch = factory(op.modality, dims)
            if batch is None:
                hashes[f"{dims}d"] = "no input"
                continue
            for sev in severities:
                g = generator_from_seed(SEED)
                # ``_sample``, not ``sample_params``: a severity recorded before its admissible range
                # was narrowed must still hash (the range check is not what is compared here)
                params = [op._sample(batch.case_info(i), g, float(sev)) for i in range(batch.size)]
                image = op.apply(batch, params).image.detach().cpu().contiguous()
                hashes[f"{dims}d@{sev!r}"] = hashlib.sha256(image.numpy().tobytes()).hexdigest()
        out[c.id] = {"version": str(cls.version), "sha256": hashes}
    return out


def compare(before: dict[str, Any], after: dict[str, Any]) -> int:
    """Print changed operators and their version bumps; 1 if an output changed without a bump."""
    bad = 0
    for op_id in sorted(set(before) | set(after)):
        b, a = before.get(op_id), after.get(op_id)
        if b is None or a is None:
            print(f"{op_id}: {'new' if b is None else 'removed'}")
            continue
        if b["sha256"] == a["sha256"]:
            note = "  (version bumped, output identical)" if b["version"] != a["version"] else ""
            print(f"{op_id}: identical{note}")
            continue
        bumped = b["version"] != a["version"]
        bad += not bumped
        print(f"{op_id}: CHANGED, version {b['version']} -> {a['version']}{'' if bumped else '  NOT BUMPED'}")
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--compare", metavar="BEFORE_JSON", help="compare with an earlier run instead of printing JSON")
    args = ap.parse_args(argv)
    if args.compare:
        with open(args.compare, encoding="utf-8") as f:
            before = json.load(f)
        return compare(before, operator_hashes(before))
    hashes = operator_hashes()
    json.dump(hashes, sys.stdout, indent=1, sort_keys=True)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
