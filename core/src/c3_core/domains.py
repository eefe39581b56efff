"""Intensity domains: what the numbers in an image tensor mean.

Every operator states the domain it expects and returns; no operator silently assumes [0, 1].
Converters between domains live in the modality plugins, which know the physics.

Domains are open. A :class:`Domain` is a string (its name, e.g. ``"counts"``) that also carries
its declaration: what the values mean, their physical range, how to show them and, for colour,
the grey-level weights. Core keeps the domains its own code and the first-party plugins share
(:data:`SHARED_DOMAINS`, also reachable as ``Domain.COUNTS`` ... and, as in 0.1,
``IntensityDomain.COUNTS``); a plugin defines its own ``Domain`` constants in a module that
imports no torch, uses them in its operators, samples and models, and registers them with the
``c3_register_domains`` hook, so a host can list them and resolve their names
(:class:`DomainRegistry`). Code that branches on a domain asks the domain (``domain.bounded``,
``domain.luma``, :meth:`Domain.to_display`), never its name.

This module imports no torch: the display kernels below use only tensor methods.
"""

from __future__ import annotations

import importlib
import math
import re
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from c3_core.plugins.registry import TARGET_PATTERN, ContributionError

if TYPE_CHECKING:
    from torch import Tensor

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
CORE = "c3-core"  # who registered the shared domains (as a plugin's name is shown for its own)


class _DomainType(type):
    """``for d in Domain`` lists the shared domains, as iterating the 0.1 enum did."""

    def __iter__(cls) -> Iterator[Domain]:
        return iter(SHARED_DOMAINS)


class Domain(str, metaclass=_DomainType):
    """An intensity domain: its name (the string itself) and its declaration.

    Args:
        name: lower-case identifier, e.g. ``"envelope"``; two domains with the same name are equal.
        meaning: what a value measures, with its unit (e.g. "echo envelope amplitude, linear").
        low, high: the physical range of the values (None = unbounded on that side); outputs of
            intensity augmentations are clamped to it.
        display: ``"module:attr"`` of an elementwise function ``f(x: Tensor) -> Tensor`` mapping
            values (float64) to display brightness, bright = dense / echogenic / bright, before
            the viewer's window; imported only when an image is shown. None: the values as they are.
        display_span: the widest display window in display units (e.g. 60 dB of echo dynamic
            range); None: the window follows the image (0.5-99.5 percentiles).
        luma: for a 3-channel colour domain, the R, G, B weights of its grey level (e.g. Rec. 709
            for linear light); None for a grey-level domain.

    ``Domain("counts")`` without a meaning is the 0.1 look-up by name: it returns the shared
    domain of that name or raises ValueError naming the shared ones.
    """

    COUNTS: ClassVar[Domain]
    LOG_ATTENUATION: ClassVar[Domain]
    HU: ClassVar[Domain]
    MAGNITUDE: ClassVar[Domain]
    LINEAR_RGB: ClassVar[Domain]
    SRGB: ClassVar[Domain]
    DISPLAY: ClassVar[Domain]

    meaning: str
    low: float | None
    high: float | None
    display: str | None
    display_span: float | None
    luma: tuple[float, float, float] | None

    def __new__(
        cls,
        name: str,
        meaning: str | None = None,
        *,
        low: float | None = None,
        high: float | None = None,
        display: str | None = None,
        display_span: float | None = None,
        luma: tuple[float, float, float] | None = None,
    ) -> Domain:
        if meaning is None:
            return parse_domain(name)
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            raise ValueError(f"intensity domain name {name!r} must be a lower-case identifier such as 'envelope'")
        if not meaning.strip():
            raise ValueError(f"intensity domain {name!r} needs a meaning")
        lo, hi = _finite_or_none(name, "low", low), _finite_or_none(name, "high", high)
        if lo is not None and hi is not None and not lo < hi:
            raise ValueError(f"intensity domain {name!r}: low {lo:g} must be below high {hi:g}")
        if display is not None and not TARGET_PATTERN.match(display):
            raise ValueError(f"intensity domain {name!r}: display {display!r} must look like 'package.module:function'")
        span = _finite_or_none(name, "display_span", display_span)
        if span is not None and span <= 0:
            raise ValueError(f"intensity domain {name!r}: display_span must be > 0, got {span:g}")
        weights = None if luma is None else tuple(float(w) for w in luma)
        if weights is not None and len(weights) != 3:
            raise ValueError(f"intensity domain {name!r}: luma needs three weights (R, G, B), got {luma!r}")
        self = super().__new__(cls, name)
        self.__dict__.update(meaning=meaning, low=lo, high=hi, display=display, display_span=span, luma=weights)
        return self

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"intensity domain {str(self)!r} is immutable")

    def __getnewargs_ex__(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Pickled and copied with its declaration (a plugin's domain is not known by name alone)."""
        kw = {k: self.__dict__[k] for k in ("low", "high", "display", "display_span", "luma")}
        return (str(self), self.meaning), kw

    def __repr__(self) -> str:
        return f"Domain({str(self)!r})"

    @property
    def value(self) -> str:
        """The name as a plain string (what the 0.1 enum's ``.value`` gave)."""
        return str(self)

    @property
    def bounded(self) -> bool:
        """Whether the values have a finite range on both sides (then the viewer's window is fixed)."""
        return self.low is not None and self.high is not None

    @property
    def unit_range(self) -> bool:
        """Whether the values lie in exactly [0, 1] (display grey levels, sRGB, linear RGB ...)."""
        return self.low == 0.0 and self.high == 1.0

    def declaration(self) -> tuple[Any, ...]:
        """Everything the domain declares, to compare two registrations of one name."""
        return (str(self), self.meaning, self.low, self.high, self.display, self.display_span, self.luma)

    def describe(self) -> dict[str, Any]:
        """The declaration as JSON-ready data."""
        name, meaning, low, high, display, span, luma = self.declaration()
        return {"name": name, "meaning": meaning, "low": low, "high": high, "display": display,
                "display_span": span, "luma": None if luma is None else list(luma)}

    def to_display(self, x: Tensor) -> Tensor:
        """``x`` mapped to display brightness by the declared ``display`` function (imported now)."""
        if self.display is None:
            return x
        module_name, attr = self.display.split(":", 1)
        fn: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            fn = getattr(fn, part)
        return fn(x)


def _finite_or_none(name: str, field: str, value: float | None) -> float | None:
    if value is None:
        return None
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"intensity domain {name!r}: {field} must be finite or None, got {value!r}")
    return v


# -- display kernels of the shared domains (elementwise; x float64) ------------------------------
def counts_display(x: Tensor) -> Tensor:
    """Photon counts -> ``-ln(counts)`` (bright = dense, as on film); counts floored at 1e-6."""
    return -(x.clamp_min(1e-6).log())


def linear_rgb_display(x: Tensor) -> Tensor:
    """Linear light in [0, 1] -> gamma 1/2.2 (display-referred)."""
    return x.clamp(0, 1) ** (1 / 2.2)


# -- the shared domains --------------------------------------------------------------------------
Domain.COUNTS = Domain(
    "counts", "detected photon counts per pixel", low=0.0, display="c3_core.domains:counts_display"
)
Domain.LOG_ATTENUATION = Domain("log_attenuation", "radiograph line integral of mu, -ln(I / I0)", low=0.0)
Domain.HU = Domain("hu", "CT Hounsfield units (water 0, air -1000)")
Domain.MAGNITUDE = Domain("magnitude", "MRI magnitude signal, arbitrary but linear units", low=0.0)
Domain.LINEAR_RGB = Domain(
    "linear_rgb", "camera linear light, 3 channels, relative radiance", low=0.0, high=1.0,
    display="c3_core.domains:linear_rgb_display", luma=(0.2126, 0.7152, 0.0722),
)
Domain.SRGB = Domain("srgb", "sRGB-encoded colour", low=0.0, high=1.0, luma=(0.299, 0.587, 0.114))
Domain.DISPLAY = Domain("display", "display grey levels after a look-up table / window", low=0.0, high=1.0)

SHARED_DOMAINS: tuple[Domain, ...] = (
    Domain.COUNTS, Domain.LOG_ATTENUATION, Domain.HU, Domain.MAGNITUDE, Domain.LINEAR_RGB, Domain.SRGB, Domain.DISPLAY,
)

IntensityDomain = Domain  # the 0.1 name: ``IntensityDomain.SRGB``, ``IntensityDomain("srgb")`` keep working


def parse_domain(value: str, known: Iterable[Domain] | None = None) -> Domain:
    """The :class:`Domain` for ``value``: a ``Domain`` as it is, a name looked up in ``known``.

    ``known`` defaults to the shared domains; a host's :class:`DomainRegistry` resolves the names
    plugins registered. Raises ValueError naming the known domains.
    """
    if isinstance(value, Domain):
        return value
    table = {str(d): d for d in (SHARED_DOMAINS if known is None else known)}
    if isinstance(value, str) and value in table:
        return table[value]
    hint = "" if known is not None else (
        "; a plugin's own domain is passed as the Domain object it registers with c3_register_domains"
    )
    raise ValueError(f"unknown intensity domain {value!r}; known: {', '.join(table)}{hint}")


class DomainRegistry:
    """The intensity domains a host knows: the shared ones plus those its plugins register.

    The registry a ``c3_register_domains`` hook receives; a plugin calls ``registry.add(domain)``.
    Registering a name again with the same declaration is allowed (a plugin may list a shared
    domain it uses); another declaration under a taken name is a :class:`ContributionError`.
    """

    def __init__(self) -> None:
        self._items: dict[str, tuple[Domain, str]] = {str(d): (d, CORE) for d in SHARED_DOMAINS}
        self._plugin = "<host>"

    def _set_plugin(self, name: str) -> None:
        self._plugin = name

    def add(self, domain: Domain) -> None:
        """Register ``domain`` (a :class:`Domain` with its declaration) for the calling plugin."""
        if not isinstance(domain, Domain):
            raise ContributionError(f"c3_register_domains: expected a c3_core.domains.Domain, got {domain!r}")
        name = str(domain)
        if name in self._items:
            other, owner = self._items[name]
            if other.declaration() != domain.declaration():
                raise ContributionError(f"intensity domain {name!r} is already registered by {owner} with another declaration")
            return
        self._items[name] = (domain, self._plugin)

    def _drop_plugin(self, name: str) -> None:
        for key in [k for k, (_, owner) in self._items.items() if owner == name]:
            del self._items[key]

    def get(self, name: str) -> Domain:
        """The registered domain called ``name`` (ValueError naming the known ones)."""
        return parse_domain(name, self)

    def parse(self, value: str) -> Domain:
        """Like :func:`parse_domain` against this registry; a ``Domain`` must be registered as declared."""
        if isinstance(value, Domain):
            known = self._items.get(str(value))
            if known is None or known[0].declaration() != value.declaration():
                raise ValueError(f"intensity domain {str(value)!r} is not registered as declared; known: {', '.join(self._items)}")
            return value
        return parse_domain(value, self)

    def owner(self, name: str) -> str:
        """Who registered ``name``: a plugin's name, or ``c3-core`` for a shared domain."""
        return self._items[str(self.get(name))][1]

    def by_plugin(self, name: str) -> list[Domain]:
        return [d for d, owner in self._items.values() if owner == name]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and str(name) in self._items

    def __iter__(self) -> Iterator[Domain]:
        return iter([d for d, _ in self._items.values()])

    def __len__(self) -> int:
        return len(self._items)
