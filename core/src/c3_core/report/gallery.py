"""The gallery of worst cases: each case's original, its worst counterfactual and their difference.

Images are rebuilt, not stored: the case is read again from the dataset the run named (through
the plugin host) and its counterfactual is replayed bit-for-bit from the provenance in
``counterfactuals.csv``. If the dataset cannot be rebuilt (plugin missing, data moved, the
dataset changed), the gallery says why instead of failing the report.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from c3_core.report.pseudonym import Pseudonymiser
from c3_core.report.results import GalleryCandidate, ModalityResults, RunResults

if TYPE_CHECKING:
    import numpy as np
    import torch

    from c3_core.domains import Domain

THUMB = 128  # longest side of a thumbnail, pixels


class GalleryUnavailable(RuntimeError):
    """The dataset of a modality cannot be rebuilt; the message says why (no ids, no paths)."""


@dataclass
class GalleryItem:
    """One worst case, ready to render."""

    exam: str
    utility: float
    score: float
    shift: str = ""
    cf_score: float = float("nan")
    admitted: bool = True
    note: str = ""
    original: str = ""
    counterfactual: str = ""
    difference: str = ""
    diff_scale: float = 0.0
    view: str = ""
    error: str = ""


@dataclass
class Gallery:
    """A modality's gallery, or the reason it could not be drawn."""

    items: list[GalleryItem] = field(default_factory=list)
    unavailable: str = ""


def build_gallery(
    run: RunResults, mod: ModalityResults, host: Any, pseudonymise: Any, matcher: Pseudonymiser | None = None
) -> Gallery:
    """Replay each gallery candidate's worst counterfactual; never raises for missing data.

    ``matcher`` pseudonymises a re-read exam with the run's key, to check it is the exam the
    results name; without it (the key is not at hand) the gallery is unavailable."""
    if not mod.gallery:
        return Gallery()
    if host is None:
        return Gallery(unavailable="no plugin host is available to rebuild the dataset")
    if matcher is None:
        return Gallery(unavailable="the pseudonym key this run was made with is not available here "
                                   "(re-render with C3_PSEUDONYM_KEY_FILE naming it to see the gallery)")
    try:
        dataset = open_dataset(run, mod, host)
    except GalleryUnavailable as exc:
        return Gallery(unavailable=str(exc))
    except Exception as exc:  # noqa: BLE001 - a plugin's loader failing must not stop the report
        # only the kind: a loader's message may quote file names, and file names may be names
        return Gallery(unavailable=f"the dataset could not be rebuilt ({type(exc).__name__})")
    return Gallery(items=[_item(c, dataset, host, pseudonymise, matcher) for c in mod.gallery])


def open_dataset(run: RunResults, mod: ModalityResults, host: Any) -> Any:
    """The run's dataset for ``mod``, built the way ``c3 evaluate`` built it."""
    dataset_id = str(mod.summary.get("dataset", ""))
    datasets = host.registry("datasets")
    if dataset_id not in datasets:
        raise GalleryUnavailable(f"dataset {dataset_id!r} is not installed here (its plugin is missing or disabled)")
    contribution = datasets.get(dataset_id)
    request = _stored_request(run.root) or run.request
    data = request.get("data")
    source = None
    if data and data not in datasets:
        if not Path(str(data)).exists():
            raise GalleryUnavailable("the data this run read (--data) is no longer at its recorded location")
        source = str(data)
    factory = contribution.load()
    from c3_core.factory_options import convert

    options = convert(request.get("data_options") or {}, factory, "dataset", "--data-option", contribution.id)
    return factory(source=source, split="test", **options) if source else factory(split="test", **options)


def _stored_request(root: Path) -> dict[str, Any]:
    """The request as the run's store keeps it (run.json keeps file names only, not paths)."""
    import sqlite3

    store = root / "results.sqlite"
    if not store.is_file():
        return {}
    try:
        db = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
        try:
            row = db.execute("SELECT value FROM meta WHERE key = 'fingerprint'").fetchone()
        finally:
            db.close()
        return dict(json.loads(row[0]).get("request") or {}) if row else {}
    except (sqlite3.Error, ValueError, TypeError):
        return {}


def _item(c: GalleryCandidate, dataset: Any, host: Any, pseudonymise: Any, matcher: Pseudonymiser) -> GalleryItem:
    item = GalleryItem(exam=c.exam, utility=c.utility, score=c.score, note=c.note)
    if c.cf is None:
        item.error = c.note
        return item
    item.shift, item.cf_score, item.admitted = c.cf["ops"], c.cf["score"], c.cf["admitted"]
    if not item.admitted and c.cf.get("reason"):
        item.note += f" (rejected: {pseudonymise.scrub(c.cf['reason'])})"
    try:
        original, counterfactual, domain, spacing, mask = _replay(c, dataset, host, matcher)
        _render(item, original, counterfactual, domain, spacing, mask)
    except GalleryUnavailable as exc:
        item.error = str(exc)
    except Exception as exc:  # noqa: BLE001 - one case failing leaves the others
        item.error = pseudonymise.scrub(f"could not be replayed ({type(exc).__name__}: {exc})")
    return item


def _replay(c: GalleryCandidate, dataset: Any, host: Any, matcher: Pseudonymiser) -> tuple[Any, Any, Domain, tuple[float, ...], Any]:
    import torch

    from c3_core.batch import collate
    from c3_core.neighbourhood import replay
    from c3_core.provenance import Provenance

    if c.index < 0 or c.index >= len(dataset):
        raise GalleryUnavailable("the case is no longer in the dataset")
    try:
        sample = dataset[c.index]
    except Exception as exc:  # noqa: BLE001 - reported by kind only (messages may quote file names)
        raise GalleryUnavailable(f"the exam could not be read again ({type(exc).__name__})") from None
    if matcher(sample.exam_id) != c.raw_exam_id:
        raise GalleryUnavailable("the dataset changed since the run (another case is at this position)")
    provenance = Provenance.from_dict(json.loads(c.cf["provenance"]))  # type: ignore[index]
    if provenance.exam_id != c.raw_exam_id:
        raise GalleryUnavailable("the counterfactual's provenance belongs to another case")
    batch = collate([sample])
    with torch.no_grad():
        cf = replay(batch, provenance, host.make_operator)
    mask = None if batch.mask is None else batch.mask[0]
    return batch.image[0], cf.image[0], batch.domain, batch.spacing[0], mask


def _display(x: torch.Tensor, domain: Domain) -> torch.Tensor:
    """Pixel values mapped for viewing (bright = dense/echogenic/bright) by the domain's declared
    display function, before windowing."""
    return domain.to_display(x.double())


def _window(a: torch.Tensor, b: torch.Tensor, domain: Domain) -> tuple[float, float]:
    """One display window for both images: a bounded domain's displayed bounds; otherwise the
    0.5-99.5 percentiles of the two together (so neither is clipped to black or white when an
    operator shifts the whole intensity range), at most the domain's ``display_span`` wide."""
    import torch

    if domain.bounded:
        bounds = domain.to_display(torch.tensor([domain.low, domain.high], dtype=torch.float64))
        lo, hi = float(bounds[0]), float(bounds[1])
        if hi > lo:
            return lo, hi
    flat = torch.cat([a.flatten(), b.flatten()])
    if flat.numel() > 1 << 20:
        flat = flat[:: flat.numel() // (1 << 20) + 1]
    lo, hi = (float(v) for v in torch.quantile(flat, torch.tensor([0.005, 0.995], dtype=flat.dtype)))
    if domain.display_span is not None:
        lo = max(lo, hi - domain.display_span)
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def _slice(image: torch.Tensor, other: torch.Tensor, spacing: tuple[float, ...], mask: Any) -> tuple[Any, Any, tuple[float, float], str]:
    """2-D views (C, H, W) of a 3-D case: across the axis of coarsest spacing, at the slice with
    the most mask, else the most change."""
    if image.ndim == 3:
        return image, other, (spacing[0], spacing[1]), ""
    axis = max(range(3), key=lambda a: (spacing[a], -a))
    dims = [d for d in range(3) if d != axis]
    if mask is not None and float(mask.sum()) > 0:
        weight = mask.double().sum(dim=[0] + [d + 1 for d in dims])
    else:
        weight = (other.double() - image.double()).abs().sum(dim=[0] + [d + 1 for d in dims])
    index = int(weight.argmax()) if float(weight.max()) > 0 else image.shape[axis + 1] // 2
    view = f"slice {index + 1} of {image.shape[axis + 1]} along axis {axis}"
    return (image.select(axis + 1, index), other.select(axis + 1, index), (spacing[dims[0]], spacing[dims[1]]), view)


def _resize(x: torch.Tensor, pixel: tuple[float, float]) -> torch.Tensor:
    """(C, H, W) resized to at most THUMB pixels on its longest side, at its physical aspect."""
    import torch.nn.functional as F

    h_mm, w_mm = x.shape[-2] * pixel[0], x.shape[-1] * pixel[1]
    scale = THUMB / max(h_mm, w_mm)
    size = (max(1, round(h_mm * scale)), max(1, round(w_mm * scale)))
    if size == tuple(x.shape[-2:]):
        return x
    down = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x[None].float(), size=size, mode="bilinear", align_corners=False, antialias=down)[0].double()


def _render(item: GalleryItem, original: Any, counterfactual: Any, domain: Domain, spacing: tuple[float, ...], mask: Any) -> None:
    from c3_core.report.figures import image_uri

    original, counterfactual = original.detach().cpu(), counterfactual.detach().cpu()
    mask = None if mask is None else mask.detach().cpu()
    a, b, pixel, item.view = _slice(original, counterfactual, spacing, mask)
    a, b = _display(a, domain), _display(b, domain)
    lo, hi = _window(a, b, domain)
    a, b = _resize((a - lo) / (hi - lo), pixel), _resize((b - lo) / (hi - lo), pixel)
    diff = (b - a).mean(0)
    scale = max(float(diff.abs().flatten().quantile(0.999)) if diff.numel() > 1 else float(diff.abs().max()), 1e-3)
    item.diff_scale = scale
    item.original = image_uri(_as_image(a))
    item.counterfactual = image_uri(_as_image(b))
    item.difference = image_uri(diff.numpy(), cmap="RdBu_r", vmin=-scale, vmax=scale)


def _as_image(x: torch.Tensor) -> np.ndarray:
    """(C, H, W) in window units -> H x W x 3 (three channels) or H x W (grey), clipped to [0, 1]."""
    x = x.clamp(0, 1)
    return x.permute(1, 2, 0).numpy() if x.shape[0] == 3 else x[0].numpy()
