"""Figures as PNG data URIs (matplotlib's Agg canvas, no pyplot global state).

Small on purpose: 72 dpi, a few hundred pixels wide, quantised to a 64-colour palette, no
metadata, so that a modality's figures take tens of kilobytes, not hundreds.
"""

from __future__ import annotations

import base64
import io
import math
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.figure import Figure

DPI = 72
PALETTE = 64
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def data_uri(png: bytes) -> str:
    """``data:image/png;base64,...`` for PNG bytes."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _figure(width: float, height: float, layout: str | None = None) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return data_uri(_quantised(buf.getvalue()))


def _quantised(png: bytes) -> bytes:
    """PNG bytes re-encoded with an adaptive palette (3-4 times smaller for plots)."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as im:
        out = io.BytesIO()
        im.convert("RGB").quantize(colors=PALETTE).save(out, format="PNG", optimize=True)
    return out.getvalue()


def severity_response_figure(curves: Mapping[str, Sequence[Mapping[str, float]]], units: Mapping[str, str]) -> str | None:
    """One panel per operator: mean score drop, flip rate and admission rate against severity."""
    ops = [op for op in sorted(curves) if curves[op]]
    if not ops:
        return None
    cols = min(4, len(ops))
    rows = math.ceil(len(ops) / cols)
    fig = _figure(3.0 * cols, 2.3 * rows, layout=None)  # fixed margins: constrained layout is slow here
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.1 / rows + 0.04, top=1 - 0.08 / rows, wspace=0.3, hspace=0.75)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat[len(ops):]:
        ax.set_visible(False)
    for ax, op in zip(axes.flat, ops):
        pts = sorted(curves[op], key=lambda p: p["severity"])
        x = [p["severity"] for p in pts]
        drops = _defined(p.get("mean_score_drop") for p in pts)
        ax.plot(x, drops, "o-", color=COLORS[0], label="mean score drop", ms=4)
        ax.plot(x, _defined(p.get("flip_rate") for p in pts), "s--", color=COLORS[1], label="flip rate", ms=3)
        ax.plot(x, _defined(p.get("admitted_rate") for p in pts), ":", color=COLORS[2], label="admitted", lw=1.5)
        ax.set_title(op, fontsize=9)
        unit = textwrap.shorten(units.get(op, ""), 44, placeholder="…")
        ax.set_xlabel(f"severity{f' [{unit}]' if unit else ''}", fontsize=7)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        lo = min([0.0, *(d for d in drops if d == d)])  # every point undefined (nothing admitted): 0
        ax.set_ylim(lo - 0.02, 1.05)
    axes.flat[0].legend(fontsize=7, loc="upper left")
    return _png(fig)


def _defined(values: Iterable[Any]) -> list[float]:
    """Plot values: an undefined point (None: nothing admitted at that severity) becomes a gap."""
    return [float(v) if isinstance(v, int | float) else math.nan for v in values]


def reliability_figure(curves: Mapping[str, Sequence[Mapping[str, float]]], ece: float | None) -> str | None:
    """Reliability diagram: accuracy against confidence per bin (marker area ~ bin count)."""
    named = {name: [b for b in bins if b.get("count", 0) > 0] for name, bins in curves.items()}
    named = {k: v for k, v in named.items() if v}
    if not named:
        return None
    fig = _figure(4.2, 3.6, layout=None)
    fig.subplots_adjust(left=0.14, right=0.97, bottom=0.13, top=0.92)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="#888", lw=1, ls="--", label="perfect calibration")
    total = max(1, max(sum(b["count"] for b in bins) for bins in named.values()))
    for i, (name, bins) in enumerate(sorted(named.items())):
        c = COLORS[i % len(COLORS)]
        ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "-", color=c, lw=1.2,
                label=name.replace("_", " "))
        ax.scatter([b["confidence"] for b in bins], [b["accuracy"] for b in bins], color=c,
                   s=[12 + 300 * b["count"] / total for b in bins], alpha=0.7, zorder=3)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence", fontsize=8)
    ax.set_ylabel("observed frequency", fontsize=8)
    ax.set_title("reliability" + (f" (ECE {ece:.3f})" if ece is not None else ""), fontsize=9)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    return _png(fig)


def utility_figure(utility: Sequence[float], score: Sequence[float], stats: Mapping[str, Any]) -> str | None:
    """Histogram of per-case utility U(x) beside the original scores s(x), mean and p10 marked."""
    u = [v for v in utility if v == v]
    s = [v for v in score if v == v]
    if not u:
        return None
    fig = _figure(4.6, 3.2, layout=None)
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.14, top=0.91)
    ax = fig.add_subplot()
    bins = [i / 20 for i in range(21)]
    ax.hist(s, bins=bins, color="#bbb", label="score s(x), original")
    ax.hist(u, bins=bins, color=COLORS[0], alpha=0.75, label="utility U(x)")
    for key, style in (("mean", "-"), ("p10", "--")):
        v = stats.get(key)
        if isinstance(v, int | float):
            ax.axvline(v, color=COLORS[1], ls=style, lw=1.2, label=f"U {key} {v:.3f}")
    ax.set_xlim(0, 1)
    ax.set_xlabel("per-case value", fontsize=8)
    ax.set_ylabel("cases", fontsize=8)
    ax.set_title(f"per-case utility ({len(u)} cases)", fontsize=9)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, loc="upper left")
    return _png(fig)


def image_uri(array: np.ndarray, *, cmap: str | None = None, vmin: float = 0.0, vmax: float = 1.0) -> str:
    """A thumbnail: H x W grey or H x W x 3 RGB in [0, 1] as a JPEG (quality 85: a third of a
    PNG's size for noisy medical images), or H x W through the colour map ``cmap`` over
    [vmin, vmax] as a 32-colour palette PNG (exact colours for difference maps)."""
    import numpy as np
    from PIL import Image

    if cmap is not None:
        from matplotlib import colormaps

        scaled = (np.asarray(array, dtype=np.float64) - vmin) / (vmax - vmin)
        rgb = colormaps[cmap](np.clip(scaled, 0.0, 1.0), bytes=True)[..., :3]
        out = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(rgb), "RGB").quantize(colors=32).save(out, format="PNG", optimize=True)
        return data_uri(out.getvalue())
    u8 = (np.clip(np.asarray(array, dtype=np.float64), 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(u8), "RGB" if u8.ndim == 3 else "L").save(out, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode("ascii")
