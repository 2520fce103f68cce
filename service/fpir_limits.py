"""What a large gallery can honestly promise (issue 14 item 5).

``/identify`` targets a per-comparison false-accept rate of FPIR / N. Past
``N = FPIR / strictest_far`` (the strictest rate the model card supports: its impostor pairs'
measured table, or the fitted tail beyond it when the card has one) the
target is beyond the calibration: the strictest measured threshold is used and the gallery can
promise an FPIR of at most about ``N * strictest_far``. The decision's ``threshold_basis`` says
so (``service.decisions.identify_threshold``); here the same figure is

* a metric, ``facegate_identify_promised_fpir{collection}`` beside
  ``facegate_identify_target_fpir``, computed at each scrape from every collection's current
  size, and
* a warning logged at start-up naming the collections past the limit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from service.decisions import largest_supported_gallery, promised_fpir
from service.gallery.gallery import Gallery
from service.model_card import Calibration

log = logging.getLogger(__name__)


def beyond(cal: Calibration, target_fpir: float, sizes: dict[str, int]) -> dict[str, float]:
    """{collection: the FPIR it can promise} for the collections whose size is past the limit."""
    return {
        name: promised_fpir(cal, target_fpir, n)
        for name, n in sorted(sizes.items())
        if promised_fpir(cal, target_fpir, n) > target_fpir
    }


def collection_sizes(gallery: Gallery) -> dict[str, int]:
    """{collection: the N its 1:N threshold is computed from now} (no database query)."""
    return {name: gallery.size([name]) for name in gallery.index.names()}


def warn_at_startup(cal: Calibration, target_fpir: float, gallery: Gallery) -> dict[str, float]:
    """Log a warning for each collection whose 1:N target is beyond the calibration."""
    found = beyond(cal, target_fpir, collection_sizes(gallery))
    if found:
        limit = largest_supported_gallery(cal, target_fpir)
        log.warning(
            "FACEGATE_TARGET_FPIR %g needs a false-accept rate below the %g this model's calibration "
            "supports in galleries of more than %d people: %s",
            target_fpir,
            cal.strictest_far,
            limit,
            "; ".join(
                f"{name} ({gallery.size([name])} people) can be promised an FPIR of at most about {p:.3g}"
                for name, p in found.items()
            ),
        )
    return found


class PromisedFpirCollector(Collector):
    """``facegate_identify_promised_fpir`` and ``facegate_identify_target_fpir`` per collection,
    read from the gallery answering now at each scrape."""

    def __init__(self, current: Callable[[], tuple[Gallery, Calibration]], target_fpir: float) -> None:
        self.current = current
        self.target_fpir = target_fpir

    def collect(self) -> Iterator[GaugeMetricFamily]:
        promised = GaugeMetricFamily(
            "facegate_identify_promised_fpir",
            "False-positive identification rate /identify can promise for each collection at its "
            "current size with this model's calibration (above the target: the gallery is past what "
            "the calibration measured)",
            labels=["collection"],
        )
        target = GaugeMetricFamily(
            "facegate_identify_target_fpir", "FACEGATE_TARGET_FPIR, the rate /identify aims at"
        )
        target.add_metric([], self.target_fpir)
        try:
            gallery, cal = self.current()
        except RuntimeError:  # not started yet
            yield target
            return
        for name, n in collection_sizes(gallery).items():
            promised.add_metric([name], promised_fpir(cal, self.target_fpir, n))
        yield promised
        yield target

    def describe(self) -> list:
        return []  # collected only at scrape time, never at registration
