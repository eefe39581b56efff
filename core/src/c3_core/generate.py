"""``c3 generate``: write counterfactual images of a cohort with their provenance.

Layout of ``OUT`` (every path inside it; names from keyed pseudonyms only, never exam ids)::

    <modality>/<case-xxxxxxxxxxxx>/original.<ext>
    <modality>/<case-xxxxxxxxxxxx>/cf-00.<ext>   + cf-00.json (provenance, encoding, sha256)
    <modality>/manifest.csv           one row per written image
    <modality>/failures.csv           cases that could not be read (index, row, pseudonym, reason)
    generate.json                     the request and versions; written last (marks completion)

Each case folder is written under a temporary name and renamed into place, so it appears whole
or not at all. Pseudonyms are HMAC-SHA256 of the exam's stable id with the user's key
(:mod:`c3_core.pseudonyms`), which never goes into ``OUT``. Image formats are described in
:mod:`c3_core.imagefiles` (16-bit PNG for 2-D, NIfTI or .npy for 3-D). Counterfactual ``k`` of
exam ``e`` is drawn from the counter-based stream keyed by (seed, ``e``) at counter ``k``, ``e``
the stable id (see :mod:`c3_core.neighbourhood`), so the same seed gives the same bytes; the
provenance JSON names the exam by its pseudonym and records the base seed, the index and the
parameters, which is all a replay needs.

Exit codes: 0 written; 2 bad input (nothing written); 3 a failure while writing, or more than
``--max-failures`` unreadable cases.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import c3_core
from c3_core.shown_paths import portable_source

EXIT_OK, EXIT_USAGE, EXIT_FAILED = 0, 2, 3
DONE_FILE = "generate.json"


class GenerateInputError(ValueError):
    """A bad option or input for ``c3 generate``."""


def typed_option(value: str) -> Any:
    """An ``--op-option`` value as TOML would read it: an integer, a float, ``true``/``false``, else the string."""
    low = value.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def _spec(host: Any, dataset: Any, neighbourhood: str | None, ops: Sequence[str], k: int, seed: int,
          op_options: dict[str, str] | None = None) -> Any:
    from c3_core.evaluation.runner import EvaluationInputError, load_spec
    from c3_core.neighbourhood import NeighbourhoodSpec, NeighbourhoodSpecError

    if neighbourhood and ops:
        raise GenerateInputError("give either --neighborhood or --op, not both")
    if op_options and not ops:
        raise GenerateInputError("--op-option applies to --op; with a neighbourhood spec, put options in the spec")
    if ops:
        options = {key: typed_option(v) for key, v in (op_options or {}).items()}
        members = [{"op": o, **({"options": options} if options else {})} for o in ops]
        try:
            return NeighbourhoodSpec.from_dict({"k": k, "seed": seed, "members": members}, source="--op")
        except NeighbourhoodSpecError as exc:
            raise GenerateInputError(str(exc)) from None
    try:
        return load_spec(dataset, neighbourhood, k, seed)
    except EvaluationInputError as exc:
        raise GenerateInputError(str(exc)) from None


def _prepare(host: Any, modality: str | None, data: str | None, neighbourhood: str | None, ops: Sequence[str],
             k: int, seed: int, limit: int | None, data_options: dict[str, Any] | None = None,
             op_options: dict[str, str] | None = None) -> tuple[str, Any, int, Any]:
    """Resolve and check everything before anything is written."""
    from c3_core.batch import collate
    from c3_core.evaluation.runner import EvaluationInputError, build_dataset, resolve_dataset
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
    spec = _spec(host, contribution, neighbourhood, ops, k, seed, op_options)
    try:
        nb = Neighbourhood(spec, host.make_operator)
    except NeighbourhoodSpecError as exc:
        raise GenerateInputError(str(exc)) from None
    for op in nb.operators():
        if op.modality != modality:
            raise GenerateInputError(f"{spec.source}: {op.id} is a {op.modality} operator, not {modality}")
    try:
        dataset = build_dataset(contribution, source, "test", data_options)
    except EvaluationInputError as exc:
        raise GenerateInputError(str(exc)) from None
    n = len(dataset) if limit is None else min(limit, len(dataset))
    if n == 0:
        raise GenerateInputError(f"dataset {contribution.id} yielded no cases")
    for i in range(min(n, 8)):  # the first readable case must fit the neighbourhood
        try:
            sample = dataset[i]
        except Exception:  # noqa: BLE001 - an unreadable case is the loop's business
            continue
        try:
            nb.check_compatible(collate([sample]))
        except ValueError as exc:
            raise GenerateInputError(f"{spec.source}: {exc}") from None
        break
    return modality, dataset, n, nb


def _write_case(root: Path, modality: str, name: str, batch: Any, cf: Any, plans: Sequence[Any],
                rejections: Sequence[str | None], written_id: str) -> list[dict[str, Any]]:
    """Write one case's original and counterfactuals into ``modality/name``; returns its
    manifest rows. Provenance names the exam by ``written_id`` (its pseudonym)."""
    from c3_core.evaluation.output import write_atomic, write_json
    from c3_core.imagefiles import encode_image

    rows = []
    folder = Path(modality) / name
    images = [("original", batch.image[0], None, None, None)] + [
        (f"cf-{j:02d}", cf.image[j], plans[j], rejections[j], j) for j in range(len(plans))
    ]
    for stem, image, plan, rejected, row in images:
        enc = encode_image(image, batch.domain, batch.spacing[0])
        rel = folder / f"{stem}{enc.suffix}"
        write_atomic(root, rel, enc.data)
        digest = hashlib.sha256(enc.data).hexdigest()
        record = {
            "file": rel.name, "sha256": digest, "encoding": enc.encoding, "modality": modality,
            "domain": batch.domain.value, "spacing_mm": list(batch.spacing[0]),
            "provenance": None if plan is None else plan.provenance().to_dict() | {"exam_id": written_id},
            "operator_check": rejected,
        }
        if plan is not None:
            record["truth"] = _counterfactual_truth(root, folder / f"{stem}.mask.npy", plan, cf, row)
            write_json(root, folder / f"{stem}.json", record)
        rows.append({
            "case": name, "image": str(rel), "k": "" if plan is None else plan.index,
            "ops": "original" if plan is None else plan.provenance().label,
            "provenance": "" if plan is None else str(folder / f"{stem}.json"),
            "operator_check": rejected or "", "sha256": digest, "format": enc.encoding["format"],
        })
    return rows


def _counterfactual_truth(root: Path, mask_rel: Path, plan: Any, cf: Any, row: int) -> dict[str, Any]:
    """What the counterfactual's edit changed (``Operator.changes``): its expected label and, for
    a changed mask, the edited mask written to ``mask_rel`` (float32 ``.npy``, NaN = unknown
    channel), so no reader pairs the image with the original's label or mask."""
    from c3_core.evaluation.output import write_atomic
    from c3_core.imagefiles import npy_bytes
    from c3_core.truth import truth_record

    label = None if cf.label is None else cf.label[row]
    mask = None if cf.mask is None else cf.mask[row]
    truth = truth_record(plan, label, mask)
    if "mask" in truth:
        write_atomic(root, mask_rel, npy_bytes(mask.detach().cpu().float().numpy()))
        truth["mask_file"] = mask_rel.name
    return truth


def _write_case_folder(root: Path, modality: str, name: str, batch: Any, cf: Any, plans: Sequence[Any],
                       rejections: Sequence[str | None]) -> list[dict[str, Any]]:
    """Write one case into a temporary folder and rename it into place (whole or not at all)."""
    import shutil

    from c3_core.evaluation.output import OutputError, contained

    final = contained(root, Path(modality) / name)
    part = Path(modality) / f".{name}.part"
    shutil.rmtree(contained(root, part), ignore_errors=True)  # a part left by a killed run
    rows = _write_case(root, modality, part.name, batch, cf, plans, rejections, written_id=name)
    try:
        if final.exists():  # --overwrite: this command's own earlier output for the case
            shutil.rmtree(final)
        (root / part).rename(final)
    except OSError as exc:
        raise OutputError(f"{final}: cannot write ({exc.strerror})") from None
    for r in rows:
        r["case"] = name
        r["image"] = str(Path(modality) / name / Path(r["image"]).name)
        if r["provenance"]:
            r["provenance"] = str(Path(modality) / name / Path(r["provenance"]).name)
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
    data_options: dict[str, Any] | None = None,
    key_file: str | None = None,
    overwrite: bool = False,
    max_failures: int = 100,
    max_counterfactuals: int | None = None,
    op_options: dict[str, str] | None = None,
) -> int:
    """Write ``k`` counterfactuals per case (operators / editors from ``ops`` or a neighbourhood
    spec, default the dataset's) with provenance into ``out``; returns the exit code.
    ``op_options`` (``--op-option KEY=VALUE``) go to the constructor of every ``ops`` entry, e.g.
    ``weights=PATH`` of an editor fitted with ``c3 editor fit``."""
    from c3_core.batch import check_finite, collate
    from c3_core.evaluation.output import OutputError, write_csv, write_json
    from c3_core.evaluation.runner import EvaluationInputError, check_counterfactual_budget
    from c3_core.output_folder import OutputBusyError, OutputFolderError, busy, check_claimable, claim
    from c3_core.plugins.registry import ContributionError, UnknownContributionError
    from c3_core.pseudonyms import Pseudonymiser, PseudonymKeyError, load_key, scrub_paths

    if host is None:
        from c3_core.plugins.host import PluginHost

        host = PluginHost().load()
    try:
        key = load_key(key_file, outside=[out])
        holder = busy(out)
        if holder:
            raise OutputBusyError(f"{out}: another c3 process ({holder}) is writing to this folder; wait for it or choose another --out")
        check_claimable(out, "generate", overwrite=overwrite, signature=(DONE_FILE,))
        if (Path(out) / DONE_FILE).exists() and not overwrite:
            raise GenerateInputError(f"{out} already holds generated counterfactuals; choose another --out (or --overwrite)")
        modality, dataset, n, nb = _prepare(host, modality, data, neighbourhood, list(ops), k, seed, limit, data_options,
                                            op_options)
        check_counterfactual_budget(n, nb.k, max_counterfactuals, modality)
    except (GenerateInputError, EvaluationInputError, UnknownContributionError, ContributionError, FileNotFoundError,
            PseudonymKeyError, OutputFolderError, ValueError) as exc:
        echo(f"error: {exc}")
        return EXIT_USAGE
    try:
        claimed = claim(out, "generate", overwrite=overwrite, signature=(DONE_FILE,))
    except OutputFolderError as exc:
        echo(f"error: {exc}")
        return EXIT_USAGE
    pseudonym = Pseudonymiser(key)
    root = claimed.path
    manifest: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    try:
        for i in range(n):
            try:
                sample = dataset[i]
                check_finite(sample.image, f"case {i}")
            except Exception as exc:  # noqa: BLE001 - an unreadable case is recorded, the others go on
                reason = f"{type(exc).__name__}: {exc}"
                echo(f"{modality}: case {i} skipped: {reason}")
                failures.append({"index": i, **_case_ref(dataset, i, pseudonym), "reason": scrub_paths(reason)})
                if len(failures) > max_failures:
                    write_csv(root, Path(modality) / "failures.csv", failures)
                    echo(f"error: more than --max-failures {max_failures} cases could not be read; stopped "
                         f"(the {len(manifest)} images written so far are kept)")
                    return EXIT_FAILED
                continue
            batch = collate([sample]).to(device)
            cf, plans, rejections = nb.draw(batch)
            manifest += _write_case_folder(root, modality, pseudonym(batch.exam_ids[0]), batch, cf, plans[0], rejections[0])
        write_csv(root, Path(modality) / "manifest.csv", manifest)
        if failures:
            write_csv(root, Path(modality) / "failures.csv", failures)
        write_json(root, DONE_FILE, {
            "c3_core": c3_core.__version__, "modality": modality, "n_cases": n, "k": nb.k,
            "n_failed": len(failures), "pseudonym_key": key.fingerprint,
            "neighbourhood": nb.spec.to_dict() | {"source": portable_source(nb.spec.source)},
            "n_images": len(manifest),
            "plugins": {pl.name: pl.version for pl in host.plugins},
            "formats": "16-bit PNG (2-D, value = offset + scale * stored), NIfTI-1 float32 or .npy (3-D)",
        })
    except (OutputError, ValueError, RuntimeError) as exc:
        echo(f"error: {exc}")
        return EXIT_FAILED
    finally:
        claimed.release()
    failed = f"; {len(failures)} unreadable case(s) listed in {modality}/failures.csv" if failures else ""
    echo(f"{len(manifest)} images of {n - len(failures)} {modality} cases written to {root}{failed}")
    return EXIT_OK


def _case_ref(dataset: Any, idx: int, pseudonym: Callable[[str], str]) -> dict[str, Any]:
    """The source row and pseudonym of case ``idx`` where the dataset can name them unread."""
    ref = getattr(dataset, "case_ref", None)
    if ref is None:
        return {}
    try:
        row, stable = ref(idx)
    except Exception:  # noqa: BLE001
        return {}
    return {"row": row, "exam_id": pseudonym(str(stable))}
