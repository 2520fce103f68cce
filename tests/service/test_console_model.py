"""The console's Model page (issue 15 item 9), in chromium.

The calibration plot marks the false-accept rate /verify uses (1e-3 by default, left out before)
and /identify's operating point for the gallery size, with no two labels overlapping, also when
the two points crowd together; the card's ROC/DET and histogram figures are shown as images; the
evaluation is a short table, not a dump of the card. Screenshots in artifacts/console/:
model-page, phone-model-page (390x844), model-crowded.
"""

from __future__ import annotations

import pytest

from tests.service.conftest import ADMIN_KEY
from tests.service.console_browser import console_server, new_page, open_tab, screenshot, sign_in

pytestmark = pytest.mark.browser
pytest_plugins = ["tests.service.console_browser"]

OVERLAPS = """() => {
  const boxes = [...document.querySelectorAll('#view svg.plot text')].map((t) => {
    const b = t.getBoundingClientRect();
    return { l: b.left, t: b.top, r: b.right, b: b.bottom, text: t.lastChild.textContent };
  }).filter((b) => b.r > b.l && b.b > b.t);
  const bad = [];
  for (let i = 0; i < boxes.length; i++)
    for (let j = i + 1; j < boxes.length; j++) {
      const a = boxes[i], c = boxes[j];
      if (a.l < c.r && c.l < a.r && a.t < c.b && c.t < a.b) bad.push(`${a.text} / ${c.text}`);
    }
  return { count: boxes.length, bad };
}"""

OUTSIDE = """() => {
  const svg = document.querySelector('#view svg.plot').getBoundingClientRect();
  return [...document.querySelectorAll('#view svg.plot text')].filter((t) => {
    const b = t.getBoundingClientRect();
    return b.left < svg.left - 0.5 || b.right > svg.right + 0.5 || b.top < svg.top - 0.5 || b.bottom > svg.bottom + 0.5;
  }).map((t) => t.lastChild.textContent);
}"""


server = console_server("console-model")


def _open_model(page) -> None:
    sign_in(page)
    page.locator("#app").wait_for()
    open_tab(page, "Model")
    page.locator("#view svg.plot text.op-label").first.wait_for()


def _labels_apart(page) -> None:
    found = page.evaluate(OVERLAPS)
    assert found["count"] >= 10 and not found["bad"], found
    assert page.evaluate(OUTSIDE) == []


@pytest.mark.parametrize("width,height,shot", [(1280, 900, "model-page"), (390, 844, "phone-model-page")])
def test_model_page_marks_what_verify_and_identify_use(browser, server, width, height, shot):
    context, page, errors = new_page(browser, server, width, height)
    try:
        card = page.request.get(f"{server}/model", headers={"Authorization": f"Bearer {ADMIN_KEY}"}).json()
        _open_model(page)
        verify = page.locator('#view svg.plot text.op-label[data-op="verify"]')
        identify = page.locator('#view svg.plot text.op-label[data-op="identify"]')
        assert verify.text_content().endswith("verify · FAR 1e−3")  # the default FACEGATE_TARGET_FAR
        # an empty gallery: FPIR 1 % over one comparison
        assert identify.text_content().endswith("identify · 0 people · FAR 1e−2")
        assert "gallery of 1" in identify.locator("title").text_content()
        legend = page.locator("#view ul.operating-points").inner_text()
        cosine = card["operating_points"]["verify"]["similarity"]
        assert (
            f"/verify: cosine ≥ {cosine:.4f}" in legend and "false-accept rate 0.001 per comparison" in legend
        )
        _labels_apart(page)

        # the figures, as images that loaded
        figures = page.locator("#view img.model-figure")
        assert figures.count() == 2
        for i in range(2):
            figures.nth(i).scroll_into_view_if_needed()
            page.wait_for_function(
                "(img) => img.complete && img.naturalWidth > 0", arg=figures.nth(i).element_handle()
            )
        captions = page.locator("#view .figures figcaption").all_inner_texts()
        assert captions == ["ROC and DET curves", "Genuine and impostor similarity histograms"]

        # the evaluation: a short table of the headline figures, not every field of the card
        table = page.locator("#view table.evaluation")
        measures = table.locator("tbody th").all_inner_texts()
        assert measures[:3] == ["Accuracy", "ROC AUC", "Equal error rate"]
        assert measures[3:] == ["Accepted at FAR 1e−2", "Accepted at FAR 1e−3"]
        ev = card["evaluation"]
        assert f"{ev['accuracy_mean'] * 100:.2f} ± {ev['accuracy_std'] * 100:.2f} %" in table.inner_text()
        # the thresholds per rate: the measured table, then the fitted tail's rows past it
        cal = card["calibration"]
        strictest = min(p["far"] for p in cal["far_table"])
        fitted = [p for p in (cal.get("far_tail") or {}).get("table", []) if p["far"] < strictest]
        assert fitted, "the shipped default card carries a fitted tail"
        rows = page.locator("#view details table.data tbody tr")
        assert rows.count() == len(cal["far_table"]) + len(fitted)
        assert rows.locator("td:last-child").all_text_contents() == (
            ["impostor pairs"] * len(cal["far_table"]) + ["fitted tail"] * len(fitted)
        )
        assert "Kolmogorov-Smirnov distance" in page.locator("#view").inner_text()
        text = page.locator("#view").inner_text()
        for dumped in ("Fold accuracies", "Fold thresholds", "Pipeline config", "Faces not found examples"):
            assert dumped not in text
        assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
        screenshot(page, shot)
    finally:
        context.close()
    assert not errors, errors


def _crowd(page, **identify) -> None:
    """Answers GET /model with the identify operating point moved (and verify's, for 'verify')."""

    def handle(route):
        response = route.fetch()
        card = response.json()
        points = card["operating_points"]
        points["verify"].update(identify.pop("verify", {}))
        points["identify"].update(identify)
        route.fulfill(response=response, json=card)

    page.route("**/model", handle)


@pytest.mark.parametrize(
    "case",
    [
        "same as verify",
        "just beside verify",
        "strictest, right edge",
        "loosest, left edge",
        "explicit verify threshold",
    ],
)
def test_labels_stay_apart_when_the_operating_points_crowd(browser, server, case):
    context, page, errors = new_page(browser, server, 390, 844)
    try:
        card = page.request.get(f"{server}/model", headers={"Authorization": f"Bearer {ADMIN_KEY}"}).json()
        table = {p["far"]: p["similarity"] for p in card["calibration"]["far_table"]}
        v = card["operating_points"]["verify"]["similarity"]
        moved = {
            "same as verify": {"far": 1e-3, "similarity": v, "gallery_size": 10},
            "just beside verify": {"far": 1.25e-3, "similarity": v - 0.002, "gallery_size": 8},
            "strictest, right edge": {"far": 1e-6, "similarity": table[1e-6], "gallery_size": 10000},
            "loosest, left edge": {"far": 0.1, "similarity": table[0.1], "gallery_size": 1, "fpir": 0.1},
            "explicit verify threshold": {
                "far": 1e-3,
                "similarity": v,
                "gallery_size": 10,
                "verify": {"far": None, "similarity": v + 0.001, "basis": "set explicitly"},
            },
        }[case]
        _crowd(page, **moved)
        _open_model(page)
        assert page.locator("#view svg.plot text.op-label").count() == 2
        _labels_apart(page)
        if case == "same as verify":
            screenshot(page, "model-crowded")
    finally:
        context.close()
    assert not errors, errors
