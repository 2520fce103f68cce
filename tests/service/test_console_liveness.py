"""The console's liveness page, in chromium with its synthetic camera (which shows no face).

Screenshots land in artifacts/console/ (liveness-step, liveness-not-live).
"""

from __future__ import annotations

import httpx
import pytest

from tests.service.conftest import ADMIN_KEY
from tests.service.console_browser import console_server, open_tab, screenshot, sign_in

pytestmark = pytest.mark.browser
pytest_plugins = ["tests.service.console_browser"]

server = console_server("console-liveness")


def test_the_webcam_flow_guides_through_the_steps_and_says_why_it_failed(page, server):
    r = httpx.post(
        f"{server}/keys",
        json={"name": "door", "scopes": ["verify"]},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
    )
    sign_in(page, r.json()["key"])
    page.locator("#app").wait_for()
    assert "Liveness" in page.locator("#nav a").all_inner_texts()
    open_tab(page, "Liveness")
    page.get_by_role("button", name="Start the liveness check").click()
    prompt = page.locator("#view .camera-stage .guide-hint")
    page.wait_for_function(
        "() => document.querySelector('#view .camera-stage .guide-hint').textContent.startsWith('1 of')"
    )
    assert page.locator("#view .liveness-arrow").inner_text().strip()  # an arrow for the step
    screenshot(page, "liveness-step")
    page.locator('#view .result[data-checked="1"] .alert').wait_for(timeout=60_000)
    result = page.locator("#view .result")
    assert result.locator(".badge").first.inner_text().lower() == "not live"
    text = result.inner_text()
    assert "No face was found in frame 1" in text  # the synthetic camera shows no face
    assert result.locator(".liveness-steps li").count() >= 2
    assert "Not confirmed as live" in prompt.inner_text() or "not confirmed" in prompt.inner_text()
    screenshot(page, "liveness-not-live")
