"""Turning similarities into scores and decisions, with thresholds tied to stated error rates."""

from __future__ import annotations

from dataclasses import dataclass

from service.model_card import Calibration


@dataclass(frozen=True)
class Threshold:
    score: float
    similarity: float
    far: float | None  # per-comparison false-accept rate the threshold was chosen for
    basis: str  # why this threshold, in words
    # 1:N only: the false-positive identification rate the calibration supports at this N (the
    # target when the table reaches f = FPIR / N, else N times its strictest measured rate)
    promised_fpir: float | None = None


def verify_threshold(cal: Calibration, target_far: float, explicit_score: float | None) -> Threshold:
    if explicit_score is not None:
        return Threshold(explicit_score, cal.similarity_for_score(explicit_score), None, "set explicitly")
    sim = cal.similarity_at_far(target_far)
    basis = f"false-accept rate {target_far:g} per comparison" + _beyond_table(cal, target_far)
    return Threshold(cal.score(sim), sim, target_far, basis)


def _beyond_table(cal: Calibration, far: float) -> str:
    """The caveat when ``far`` is stricter than the calibration measured: from its fitted tail,
    or, past that too, the strictest threshold it supports."""
    measured, strictest = cal.strictest_measured_far, cal.strictest_far
    if far >= measured:
        return ""
    if far >= strictest and cal.far_tail is not None:
        tail = cal.far_tail
        return (
            f" (stricter than the {measured:g} this model's impostor pairs measured: the threshold "
            f"comes from its fitted tail, a generalised Pareto fit to the {tail.exceedances:,} "
            f"impostor pairs above similarity {tail.threshold:.3f}, upper end of its 95 % interval)"
        )
    return (
        f" (stricter than the {strictest:g} this model's calibration supports: its threshold at "
        f"{strictest:g} is used, so the stated rate is not guaranteed)"
    )


def identify_threshold(cal: Calibration, target_fpir: float, gallery_size: int) -> Threshold:
    """Threshold keeping the false-positive identification rate at ``target_fpir``.

    A stranger compared with N people has N chances of a false accept, so FPIR ~= N * f: the
    per-comparison rate is f = FPIR / N.
    """
    n = max(gallery_size, 1)
    far = target_fpir / n
    sim = cal.similarity_at_far(far)
    promised = promised_fpir(cal, target_fpir, n)
    basis = (
        f"false-positive identification rate {target_fpir:g} over a gallery of {n} "
        f"-> false-accept rate {far:.3g} per comparison"
    ) + _beyond_table(cal, far)
    if promised > target_fpir:
        basis += (
            f"; over {n} people this model's calibration supports a false-positive identification rate "
            f"of at most about {promised:.3g}, not {target_fpir:g}"
        )
    return Threshold(cal.score(sim), sim, far, basis, promised)


def promised_fpir(cal: Calibration, target_fpir: float, gallery_size: int) -> float:
    """The false-positive identification rate a gallery of ``gallery_size`` can be promised: the
    target while ``target / N`` is within the calibration (its measured table, or its fitted tail
    beyond it), else ``N`` times the strictest rate it supports (the threshold used there), at
    most 1."""
    n = max(gallery_size, 1)
    return (
        min(1.0, max(target_fpir, n * cal.strictest_far))
        if target_fpir / n < cal.strictest_far
        else target_fpir
    )


def largest_supported_gallery(cal: Calibration, target_fpir: float) -> int:
    """The most people a gallery may hold with ``target_fpir`` still within the calibration."""
    return int(target_fpir / cal.strictest_far)


@dataclass(frozen=True)
class Scored:
    person_id: str
    name: str
    similarity: float
    score: float


def identify_outcome(candidates: list[Scored], threshold: Threshold, margin: float) -> str:
    """``match``, ``unknown`` (best below threshold) or ``ambiguous`` (two above, closer than margin)."""
    above = [c for c in candidates if c.score >= threshold.score]
    if not above:
        return "unknown"
    if len(above) > 1 and above[0].score - above[1].score < margin:
        return "ambiguous"
    return "match"
