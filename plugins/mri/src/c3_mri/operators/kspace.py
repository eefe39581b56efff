"""k-space artefacts: Gibbs truncation, N/2 ghosting, rigid motion between segments, spikes.

All four are intensity operators (the mask stays valid): motion keeps the segment holding the
k-space centre at the reference pose, so the object stays registered to its mask and only
ghosts/blurs. Kernels: :mod:`c3_mri.functional.kspace`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from c3_core.batch import Batch, CaseInfo
from c3_core.operator import Severity, SeveritySource
from c3_core.seeding import Draws, uniform
from c3_mri.functional.kspace import add_spike, nyquist_ghost, rigid_theta, segment_lines, segmented_motion, truncate
from c3_mri.operators._base import MriOperator


def _check_axis(op_id: str, axis: int, dims: int) -> None:
    if not 0 <= axis < dims:
        raise ValueError(f"{op_id}: phase_axis {axis} does not exist in a {dims}-D image")


# -- Gibbs -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GibbsParams:
    kept_fraction: float  # centred fraction of k-space kept along every axis


class GibbsTruncation(MriOperator[GibbsParams]):
    id = "mri.gibbs"
    version = "3"  # 3: real-input FFTs (the same truncation, float rounding)
    severity = Severity(
        "kept_fraction", "fraction of k-space kept per axis", 1.0, 0.5, (0.85, 0.7, 0.6, 0.5),
        source=SeveritySource(
            quantity="acquired k-space extent per axis relative to the reference (acquisition matrix / reconstruction)",
            derivation=(
                "Truncating k-space to a central fraction k is acquiring a matrix k N and zero-filling to N; the "
                "Gibbs ringing follows. Brain series are acquired from 256 down to 128 matrices over the same FOV "
                "(e.g. 1 mm 3-D research T1 against 2 mm EPI-based or fast clinical series), a ratio of 0.5"
            ),
            extreme_rationale="a 128-matrix acquisition zero-filled to 256, standard on many clinical protocols",
        ),
    )
    params_type = GibbsParams
    summary = "Gibbs ringing from truncating k-space to a central fraction per axis"

    def _sample(self, info: CaseInfo, generator: Draws, severity: float) -> GibbsParams:
        return GibbsParams(severity)

    def _apply(self, batch: Batch, params: Sequence[GibbsParams]) -> Batch:
        kept = torch.tensor([p.kept_fraction for p in params], device=batch.device, dtype=batch.image.dtype)
        return batch.replace(image=truncate(batch.image, kept))


# -- ghosting ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class GhostParams:
    ghost_fraction: float  # N/2 ghost amplitude relative to the object
    phase_axis: int


class Ghosting(MriOperator[GhostParams]):
    """Alternate phase-encode lines scaled by (1 − 2a): (1 − a) object + a N/2-shifted ghost."""

    id = "mri.ghosting"
    version = "3"  # 3: even N as roll + lerp (the same blend, float rounding)
    severity = Severity(
        "ghost_fraction", "ghost amplitude / object amplitude", 0.0, 0.1, (0.025, 0.05, 0.075, 0.1),
        source=SeveritySource(
            quantity="N/2 (Nyquist) ghost-to-object amplitude ratio along phase encode",
            reference=(
                "Giannelli M et al., Characterization of Nyquist ghost in EPI-fMRI acquisition sequences implemented "
                "on two clinical 1.5 T MR scanner systems, J Appl Clin Med Phys 2010;11(4):170-180, "
                "doi:10.1120/jacmp.v11i4.3237 (ghost-to-signal ratio depends on bandwidth and echo spacing)"
            ),
            derivation=(
                "A constant odd/even phase error phi splits the object into cos(phi/2) object and sin(phi/2) ghost: "
                "a 10 % ghost is an uncorrected phase error of 11.5°, the order left by eddy currents or mechanical "
                "resonance after reference-scan correction"
            ),
            extreme_rationale="a visible but readable EPI ghost, as in DWI/fMRI series accepted for reading",
            narrowed=(
                "0 -> 0.2 narrowed to 0 -> 0.1: no source found for a 20 % ghost (phase error 23°) in an accepted "
                "series"
            ),
        ),
    )
    params_type = GhostParams
    summary = "N/2 (Nyquist) ghost from alternate-line errors along phase encode"

    def __init__(self, phase_axis: int = 1) -> None:
        self.phase_axis = int(phase_axis)

    def _sample(self, info: CaseInfo, generator: Draws, severity: float) -> GhostParams:
        _check_axis(self.id, self.phase_axis, len(info.spatial_shape))
        return GhostParams(severity, self.phase_axis)

    def _apply(self, batch: Batch, params: Sequence[GhostParams]) -> Batch:
        axes = {p.phase_axis for p in params}
        if len(axes) != 1:
            raise ValueError(f"{self.id}: one batch cannot mix phase-encode axes {sorted(axes)}")
        a = torch.tensor([p.ghost_fraction for p in params], device=batch.device)
        return batch.replace(image=nyquist_ghost(batch.image, a, axes.pop()))


# -- motion ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MotionParams:
    phase_axis: int
    segments: int  # k-space segments acquired sequentially along phase encode
    rotations_deg: tuple[tuple[float, ...], ...]  # per segment: 3 angles (3-D) or 1 (2-D)
    translations_mm: tuple[tuple[float, ...], ...]  # per segment, along the spatial axes


class RigidMotion(MriOperator[MotionParams]):
    """Each k-space segment sees the head in its own rigid pose; the centre segment is the
    reference. Severity a: translations ~ U(−a, a) mm and rotations ~ U(−a, a) degrees per axis."""

    id = "mri.motion"
    # 3: the reference segment's object as it is (not resampled through an identity grid), real FFTs
    # of each pose, the grid built per axis: the same model, float rounding (~1e-6 relative)
    # 2: 1-D FFTs along the phase-encode axis only (the others cancel; float rounding)
    version = "3"
    severity = Severity(
        "motion_amplitude", "mm translation and degrees rotation per axis", 0.0, 0.5, (0.125, 0.25, 0.375, 0.5),
        source=SeveritySource(
            quantity="rigid head pose change per k-space segment: translations and rotations ~ U(-a, a) per axis",
            reference=(
                "Afacan O et al., Evaluation of motion and its effect on brain magnetic resonance image quality in "
                "children, Pediatr Radiol 2016;46(12):1728-1735, doi:10.1007/s00247-016-3677-9 (of 17 scans with "
                "average displacement > 0.5 mm from the k-space-centre pose, 11 were non-diagnostic)"
            ),
            derivation=(
                "With 3 of 4 segments moved, a = 0.5 gives a mean translation of about 0.36 mm and a rotation of "
                "up to 0.5° (0.6 mm at 70 mm from the centre): an average displacement near 0.5 mm"
            ),
            extreme_rationale=(
                "the largest average displacement at which most scans in the cited study were still diagnostic"
            ),
            narrowed=(
                "0 -> 3 narrowed to 0 -> 0.5: 3 mm / 3° per segment is an average displacement of about 3 mm, "
                "where the cited study found scans non-diagnostic"
            ),
        ),
    )
    params_type = MotionParams
    summary = "rigid head motion between k-space segments (ghosting and blurring along phase encode)"

    def __init__(self, phase_axis: int = 1, segments: int = 4) -> None:
        if int(segments) < 2:
            raise ValueError(f"{self.id}: segments must be >= 2, got {segments}")
        self.phase_axis, self.segments = int(phase_axis), int(segments)

    def _sample(self, info: CaseInfo, generator: Draws, severity: float) -> MotionParams:
        d = len(info.spatial_shape)
        _check_axis(self.id, self.phase_axis, d)
        _, ref = segment_lines(info.spatial_shape[self.phase_axis], self.segments)
        n_rot = 3 if d == 3 else 1
        rots, trans = [], []
        for s in range(self.segments):
            r = tuple(uniform(generator, -severity, severity) for _ in range(n_rot))
            t = tuple(uniform(generator, -severity, severity) for _ in range(d))
            rots.append(tuple(0.0 for _ in r) if s == ref else r)
            trans.append(tuple(0.0 for _ in t) if s == ref else t)
        return MotionParams(self.phase_axis, self.segments, tuple(rots), tuple(trans))

    def _apply(self, batch: Batch, params: Sequence[MotionParams]) -> Batch:
        kinds = {(p.phase_axis, p.segments) for p in params}
        if len(kinds) != 1:
            raise ValueError(f"{self.id}: one batch cannot mix phase axes / segment counts {sorted(kinds)}")
        axis, segments = kinds.pop()
        b, sp = batch.size, batch.spatial_shape
        angles = torch.tensor([p.rotations_deg for p in params], dtype=torch.float64)  # (B, S, r)
        shifts_mm = torch.tensor([p.translations_mm for p in params], dtype=torch.float64)  # (B, S, d)
        spacing = torch.tensor(batch.spacing, dtype=torch.float64).unsqueeze(1)  # (B, 1, d)
        theta = rigid_theta(angles.reshape(b * segments, -1), (shifts_mm / spacing).reshape(b * segments, -1), sp)
        seg, _ = segment_lines(sp[axis], segments, batch.device)
        out = segmented_motion(batch.image, theta.reshape(b, segments, *theta.shape[1:]).to(batch.device),
                               seg.unsqueeze(0).expand(b, -1), axis)
        return batch.replace(image=out)


# -- spike -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SpikeParams:
    position: tuple[float, ...]  # spike frequency per spatial axis, cycles / voxel in [-0.5, 0.5)
    amplitude: float  # stripe amplitude / image mean
    phase_rad: float


class Spike(MriOperator[SpikeParams]):
    """One corrupt k-space sample (a spike): a herringbone stripe pattern over the image."""

    id = "mri.spike"
    version = "3"  # 3: the magnitude as sqrt(re² + im²), not hypot (the same value, 1 ulp); 2: no FFT
    severity = Severity(
        "spike_amplitude", "stripe amplitude / mean image intensity", 0.0, 0.2, (0.05, 0.1, 0.15, 0.2),
        source=SeveritySource(
            quantity="amplitude of the herringbone stripe pattern from one corrupt k-space sample, / image mean",
            derivation=(
                "A spike of amplitude A at one k-space location adds a plane wave of amplitude A / N to every voxel. "
                "Stripes up to 20 % of the mean stay below the lesion-WM difference of the default 3 T FLAIR (0.74 "
                "of WM, Bloch model) and at the T1 grey-white difference (0.23 of WM), so boundaries stay separable"
            ),
            extreme_rationale=(
                "a visible herringbone that a reader can look through; stronger spikes make the series be repeated"
            ),
            narrowed=(
                "0 -> 0.5 narrowed to 0 -> 0.2: stripes at half the mean intensity exceed tissue contrast and no "
                "source shows such series accepted"
            ),
        ),
    )
    params_type = SpikeParams
    summary = "k-space spike: herringbone stripes of a set amplitude relative to the image mean"

    def _sample(self, info: CaseInfo, generator: Draws, severity: float) -> SpikeParams:
        # away from the centre (|f| >= 0.05 cycles/voxel on at least one axis) so it is a pattern,
        # not a brightness change
        pos = [uniform(generator, -0.5, 0.5) for _ in info.spatial_shape]
        if max(abs(p) for p in pos) < 0.05:
            pos[0] = 0.05 + 0.45 * abs(pos[0]) / 0.05
        return SpikeParams(tuple(pos), severity, uniform(generator, -3.14159, 3.14159))

    def _apply(self, batch: Batch, params: Sequence[SpikeParams]) -> Batch:
        sp = batch.spatial_shape
        idx = torch.zeros(batch.size, dtype=torch.long)
        stride = 1
        for axis in reversed(range(len(sp))):
            f = torch.tensor([p.position[axis] for p in params], dtype=torch.float64)
            k = torch.round(f * sp[axis]).long() % sp[axis]
            idx = idx + k * stride
            stride *= sp[axis]
        amp = torch.tensor([p.amplitude for p in params], device=batch.device)
        phase = torch.tensor([p.phase_rad for p in params], device=batch.device)
        return batch.replace(image=add_spike(batch.image, idx.to(batch.device), amp, phase))
