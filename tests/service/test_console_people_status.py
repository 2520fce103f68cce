"""The console's People page suspends and reactivates a person (PATCH /people/{id}), in chromium.

A suspended person is kept but never matched: the row says so with a badge and the date, the
button reactivates; /verify answers 409 person_suspended meanwhile. Screenshots in
artifacts/console/: people-suspended, phone-people-suspended (390x844).
"""

from __future__ import annotations

import httpx
import pytest

from tests.service.conftest import ADMIN_KEY
from tests.service.console_browser import (
    console_server,
    enrol_lfw_person,
    new_page,
    open_tab,
    screenshot,
    sign_in,
)

pytestmark = [pytest.mark.browser, pytest.mark.lfw]
pytest_plugins = ["tests.service.console_browser"]
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}

server = console_server("console-people-status")


@pytest.fixture(scope="module")
def person(server, lfw_people):
    a = lfw_people[0]
    enrol_lfw_person(server, a, "lfw-a")
    return a


def _verify(server, person) -> httpx.Response:
    photo = sorted(person.glob("*.jpg"))[1]
    return httpx.post(
        f"{server}/verify",
        files={"image": (photo.name, photo.read_bytes(), "image/jpeg")},
        data={"person_id": "lfw-a"},
        headers=ADMIN,
        timeout=120,
    )


def _status(server) -> str:
    return httpx.get(f"{server}/people/lfw-a", headers=ADMIN).json()["status"]


@pytest.mark.parametrize(
    "width,height,shot", [(1280, 900, "people-suspended"), (390, 844, "phone-people-suspended")]
)
def test_suspend_and_reactivate_from_the_people_page(browser, server, person, width, height, shot):
    context, page, errors = new_page(browser, server, width, height)
    try:
        sign_in(page)
        page.locator("#app").wait_for()
        open_tab(page, "People")
        row = page.locator('#view li.person[data-person-id="lfw-a"]')
        row.get_by_role("button", name="Suspend").click()
        page.locator(".toast").filter(has_text="is suspended").first.wait_for()
        row.locator(".badge", has_text="suspended").wait_for()
        assert "never matched" in row.inner_text() and "photo replaced" not in row.inner_text()
        assert _status(server) == "suspended"
        refused = _verify(server, person)
        assert refused.status_code == 409 and refused.json()["code"] == "person_suspended"
        assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
        screenshot(page, shot)

        row.get_by_role("button", name="Reactivate").click()
        row.get_by_role("button", name="Suspend").wait_for()
        assert row.locator(".badge").count() == 0 and "never matched" not in row.inner_text()
        assert _status(server) == "active"
        assert _verify(server, person).json()["match"] is True
    finally:
        context.close()
    assert not errors, errors
