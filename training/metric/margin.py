"""Margin schedules for margin-based losses (triplet loss in particular).

Every schedule has the same interface:

- ``value``: the margin to use now (a float);
- ``step_epoch(easy_ratio)``: call once after each training epoch with that epoch's share of easy
  triplets (triplets with zero loss, counted over the whole epoch); returns the new value.
  Only :class:`DifficultyMarginScheduler` uses the share; the others count epochs;
- ``epoch``: how many epochs have been stepped;
- ``state_dict()`` / ``load_state_dict()``: plain dicts for checkpoints, so a resumed run goes on
  with the margin it had.

A schedule object can be handed to :class:`training.metric.losses.TripletMarginLoss` as its margin; the
loss reads ``value`` at every call.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from typing import Any

logger = logging.getLogger(__name__)


class MarginSchedule(ABC):
    """Common interface of all margin schedules."""

    def __init__(self) -> None:
        self._epoch = 0

    @property
    @abstractmethod
    def value(self) -> float:
        """Current margin."""

    @property
    def epoch(self) -> int:
        return self._epoch

    def step_epoch(self, easy_ratio: float | None = None) -> float:
        """Advance by one epoch; ``easy_ratio`` is the epoch's share of zero-loss triplets."""
        self._epoch += 1
        self._advance(easy_ratio)
        return self.value

    def _advance(self, easy_ratio: float | None) -> None:  # noqa: B027 - optional hook
        """Update internal state after an epoch (default: nothing beyond the epoch count)."""

    def state_dict(self) -> dict[str, Any]:
        return {"kind": type(self).__name__, "epoch": self._epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("kind") != type(self).__name__:
            raise ValueError(f"state is for {state.get('kind')!r}, not {type(self).__name__!r}")
        epoch = int(state["epoch"])
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self._epoch = epoch

    def __repr__(self) -> str:
        return f"{type(self).__name__}(value={self.value:.6g}, epoch={self._epoch})"


class ConstantMargin(MarginSchedule):
    """A fixed margin."""

    def __init__(self, value: float = 0.2) -> None:
        super().__init__()
        if value < 0:
            raise ValueError(f"margin must be >= 0, got {value}")
        self._value = float(value)

    @property
    def value(self) -> float:
        return self._value


def _check_ramp(start: float, end: float, epochs: int) -> None:
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if start < 0 or end < start:
        raise ValueError(f"need 0 <= start <= end for an increasing margin, got start={start}, end={end}")


class LinearMargin(MarginSchedule):
    """``start + (end - start) * min(epoch, epochs) / epochs``: reaches ``end`` after ``epochs``."""

    def __init__(self, start: float = 0.1, end: float = 0.5, epochs: int = 10) -> None:
        super().__init__()
        _check_ramp(start, end, epochs)
        self.start, self.end, self.epochs = float(start), float(end), int(epochs)

    @property
    def value(self) -> float:
        t = min(self._epoch, self.epochs) / self.epochs
        return self.start + (self.end - self.start) * t


class ExponentialMargin(MarginSchedule):
    """Geometric ramp ``start * (end / start) ** (min(epoch, epochs) / epochs)``.

    Grows by the same factor every epoch (so slowly first, fast last) and reaches ``end`` after
    ``epochs`` epochs; needs ``start > 0``.
    """

    def __init__(self, start: float = 0.1, end: float = 0.5, epochs: int = 10) -> None:
        super().__init__()
        _check_ramp(start, end, epochs)
        if start <= 0:
            raise ValueError(f"an exponential ramp needs start > 0, got {start}")
        self.start, self.end, self.epochs = float(start), float(end), int(epochs)

    @property
    def value(self) -> float:
        if self._epoch >= self.epochs:
            return self.end
        t = self._epoch / self.epochs
        return self.start * math.exp(t * math.log(self.end / self.start))


class DifficultyMarginScheduler(MarginSchedule):
    """Margin scheduler of Pedroso et al. (2026), "Maintaining Difficulty".

    After each epoch, if the epoch's share of easy triplets (zero loss) is ``>= threshold``, the
    margin grows by ``step``; otherwise it stays. It never decreases. With ``max_margin`` set it
    stops there. The value is ``initial + step * increments`` (no float drift over many steps).
    """

    def __init__(
        self,
        initial: float = 0.2,
        threshold: float = 0.95,
        step: float = 0.05,
        max_margin: float | None = None,
    ) -> None:
        super().__init__()
        if initial < 0:
            raise ValueError(f"initial margin must be >= 0, got {initial}")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        if step <= 0:
            raise ValueError(f"step must be > 0, got {step}")
        if max_margin is not None and max_margin < initial:
            raise ValueError(f"max_margin ({max_margin}) must be >= initial ({initial})")
        self.initial, self.threshold, self.step = float(initial), float(threshold), float(step)
        self.max_margin = None if max_margin is None else float(max_margin)
        self._increments = 0

    @property
    def value(self) -> float:
        v = self.initial + self.step * self._increments
        return v if self.max_margin is None else min(v, self.max_margin)

    @property
    def increments(self) -> int:
        """How many times the margin has grown."""
        return self._increments

    def _advance(self, easy_ratio: float | None) -> None:
        if easy_ratio is None or not 0.0 <= easy_ratio <= 1.0:
            raise ValueError(f"easy_ratio must be a share in [0, 1], got {easy_ratio}")
        at_max = self.max_margin is not None and self.value >= self.max_margin
        if easy_ratio >= self.threshold and not at_max:
            self._increments += 1
            logger.info(
                "epoch %d: %.1f%% easy triplets >= %.1f%%, margin -> %.4g",
                self._epoch,
                100 * easy_ratio,
                100 * self.threshold,
                self.value,
            )

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "increments": self._increments, "value": self.value}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        increments = int(state["increments"])
        if increments < 0:
            raise ValueError(f"increments must be >= 0, got {increments}")
        self._increments = increments


MarginLike = float | MarginSchedule


def margin_value(margin: MarginLike) -> float:
    """The current value of a float margin or of a schedule."""
    return margin.value if isinstance(margin, MarginSchedule) else float(margin)


MARGINS: dict[str, type[MarginSchedule]] = {
    "constant": ConstantMargin,
    "linear": LinearMargin,
    "exponential": ExponentialMargin,
    "difficulty": DifficultyMarginScheduler,
}


def build_margin(name: str, **kwargs: Any) -> MarginSchedule:
    """Instantiate a margin schedule by registry name; unknown names raise ``ValueError``."""
    if name not in MARGINS:
        raise ValueError(f"unknown margin schedule {name!r}; valid names: {sorted(MARGINS)}")
    return MARGINS[name](**kwargs)
