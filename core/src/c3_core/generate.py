"""``c3 generate``: write counterfactual images of a cohort with their provenance.

Layout of ``OUT`` (every path inside it; names from keyed pseudonyms only, never exam ids)::

    pseudonym.key                     the HMAC key of the pseudonyms (keep it private; reuse it
                                      to get the same file names again)
    <modality>/<case-xxxxxxxxxxxx>/original.<ext>
    <modality>/<case-xxxxxxxxxxxx>/cf-00.<ext>   + cf-00.json (provenance, encoding, sha256)
    <modality>/manifest.csv           one row per written image
    generate.json                     the request and versions; written last (marks completion)

Image formats are described in :mod:`c3_core.imagefiles` (16-bit PNG for 2-D, NIfTI or .npy for
3-D). Counterfactual ``k`` of exam ``e`` is drawn from ``derive_seed(seed, e, k)`` (see
:mod:`c3_core.neighbourhood`), so with the same seed and pseudonym key every byte is the same.
The provenance JSON carries the exam id (needed to replay), so treat the folder like the data.

Exit codes: 0 written; 2 bad input (nothing written); 3 a failure while writing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import c3_core

EXIT_OK, EXIT_USAGE, EXIT_FAILED = 0, 2, 3
DONE_FILE = "generate.json"


class GenerateInputError(ValueError):
    """A bad option or input for ``c3 generate``."""


def _spec(host: Any, dataset: Any, neighbourhood: str | None, ops: Sequence[str], k: int, seed: int) -> Any:
    from c3_core.evaluation.runner import EvaluationInputError, load_spec
    from c3_core.neighbourhood import NeighbourhoodSpec, NeighbourhoodSpecError

    if neighbourhood and ops:
        raise GenerateInputError("give either --neighborhood or --op, not both")
    if ops:
        try:
            return NeighbourhoodSpec.from_dict({"k": k, "seed": seed, "members": [{"op": o} for o in ops]}, source="--op")
        except NeighbourhoodSpecError as exc:
            raise GenerateInputError(str(exc)) from None
    try:
        return load_spec(dataset, neighbourhood, k, seed)
    except EvaluationInputError as exc:
        raise GenerateInputError(str(exc)) from None


def _prepare(host: Any, modality: str | None, data: str | None, neighbourhood: str | None, ops: Sequence[str],
             k: int, seed: int, limit: int | None) -> tuple[str, Any, int, Any]:
    """Resolve and check everything before anything is written."""
    from c3_core.batch import collate
    from c3_core.evaluation.runner import EvaluationInputError, resolve_dataset
    from c3_core.neighbourhood import Neighbourhood, NeighbourhoodSpecError

    installed = host.modalities()
    if modality is None:
        if len(installed) != 1:
            raise GenerateInputError(f"choose a --modality (installed: {', '.join(installed) or 'none'})")
        modality = installed[0]
    if modality not in installed:
        raise GenerateInputError(f"unknown modality {modality!r} (installed: {', '.join(installed) or 'none'})")
    if k < 1 or (limit is not None and limit < 1):
        raise GenerateInputError("--k and --limit must be >= 1")
    try:
        contribution, source = resolve_dataset(host, modality, data)
    except EvaluationInputError as exc:
        raise GenerateInputError(str(exc)) from None
    spec = _spec(host, contribution, neighbourhood, ops, k, seed)
    try:
        nb = Neighbourhood(spec, host.make_operator)
    except NeighbourhoodSpecError as exc:
        raise GenerateInputError(str(exc)) from None
    for op in nb.operators():
        if op.modality != modality:
            raise GenerateInputError(f"{spec.source}: {op.id} is a {op.modality} operator, not {modality}")
    dataset = contribution.load()(source=source, split="test") if source else contribution.load()(split="test")
    n = len(dataset) if limit is None else min(limit, len(dataset))
    if n == 0:
        raise GenerateInputError(f"dataset {contribution.id} yielded no cases")
    try:
        nb.check_compatible(collate([dataset[0]]))
    except ValueError as exc:
        raise GenerateInputError(f"{spec.source}: {exc}") from None
    return modality, dataset, n, nb


def _write_case(root: Path, modality: str, name: str, batch: Any, cf: Any, plans: Sequence[Any],
                rejections: Sequence[str | None]) -> list[dict[str, Any]]:
    """Write one case's original and counterfactuals; returns its manifest rows."""
    from c3_core.evaluation.output import write_atomic, write_json
    from c3_core.imagefiles import encode_image

    rows = []
    folder = Path(modality) / name
    images = [("original", batch.image[0], None, None)] + [
        (f"cf-{j:02d}", cf.image[j], plans[j], rejections[j]) for j in range(len(plans))
    ]
    for stem, image, plan, rejected in images:
        enc = encode_image(image, batch.domain, batch.spacing[0])
        rel = folder / f"{stem}{enc.suffix}"
        write_atomic(root, rel, enc.data)
        digest = hashlib.sha256(enc.data).hexdigest()
        record = {
            "file": rel.name, "sha256": digest, "encoding": enc.encoding, "modality": modality,
            "domain": batch.domain.value, "spacing_mm": list(batch.spacing[0]),
            "provenance": None if plan is None else plan.provenance().to_dict(),
            "operator_check": rejected,
        }
        if plan is not None:
            write_json(root, folder / f"{stem}.json", record)
        rows.append({
            "case": name, "image": str(rel), "k": "" if plan is None else plan.index,
            "ops": "original" if plan is None else plan.provenance().label,
            "provenance": "" if plan is None else str(folder / f"{stem}.json"),
            "operator_check": rejected or "", "sha256": digest, "format": enc.encoding["format"],
        })
    return rows


def generate_command(
    modality: str | None,
    data: str | None,
    neighbourhood: str | None,
    ops: Sequence[str],
    k: int,
    seed: int,
    out: str | Path,
    limit: int | None,
    *,
    device: str = "cpu",
    host: Any = None,
    echo: Callable[[str], None] = print,
) -> int:
    """Write ``k`` counterfactuals per case (operators / editors from ``ops`` or a neighbourhood
    spec, default the dataset's) with provenance into ``out``; returns the exit code."""
    from c3_core.batch import collate
    from c3_core.evaluation.output import OutputError, prepare_output_dir, write_csv, write_json
    from c3_core.plugins.registry import ContributionError, UnknownContributionError
    from c3_core.report.pseudonym import Pseudonymiser, load_key

    if host is None:
        from c3_core.plugins.host import PluginHost

        host = PluginHost().load()
    try:
        if (Path(out) / DONE_FILE).exists():
            raise GenerateInputError(f"{out} already holds generated counterfactuals; choose another --out")
        modality, dataset, n, nb = _prepare(host, modality, data, neighbourhood, list(ops), k, seed, limit)
    except (GenerateInputError, UnknownContributionError, ContributionError, FileNotFoundError) as exc:
        echo(f"error: {exc}")
        return EXIT_USAGE
    try:
        root = prepare_output_dir(out)
        key, _ = load_key(root)
        pseudonym = Pseudonymiser(key)
        manifest: list[dict[str, Any]] = []
        for i in range(n):
            batch = collate([dataset[i]]).to(device)
            cf, plans, rejections = nb.draw(batch)
            manifest += _write_case(root, modality, pseudonym(batch.exam_ids[0]), batch, cf, plans[0], rejections[0])
        write_csv(root, Path(modality) / "manifest.csv", manifest)
        write_json(root, DONE_FILE, {
            "c3_core": c3_core.__version__, "modality": modality, "n_cases": n, "k": nb.k,
            "neighbourhood": nb.spec.to_dict() | {"source": nb.spec.source}, "n_images": len(manifest),
            "plugins": {pl.name: pl.version for pl in host.plugins},
            "formats": "16-bit PNG (2-D, value = offset + scale * stored), NIfTI-1 float32 or .npy (3-D)",
        })
    except (OutputError, ValueError, RuntimeError) as exc:
        echo(f"error: {exc}")
        return EXIT_FAILED
    echo(f"{len(manifest)} images of {n} {modality} cases written to {root}")
    return EXIT_OK
