"""The console's compare page (POST /compare) and keys page (GET/POST/DELETE /keys), in chromium.

Screenshots land in artifacts/console/ (compare, compare-different, phone-compare, keys,
keys-created, keys-revoke-confirm, phone-keys).
"""

from __future__ import annotations

import httpx
import pytest

from tests.service.conftest import ADMIN_KEY
from tests.service.console_browser import console_server, new_page, open_tab, screenshot, sign_in

pytestmark = pytest.mark.browser
pytest_plugins = ["tests.service.console_browser"]
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


server = console_server("console-compare-keys")


def _key(server: str, name: str, scopes: list[str]) -> dict:
    r = httpx.post(f"{server}/keys", json={"name": name, "scopes": scopes}, headers=ADMIN)
    assert r.status_code == 201, r.text
    return r.json()


def _compare(page, a, b) -> None:
    inputs = page.locator("#view input[type=file]")
    assert inputs.count() == 2
    inputs.nth(0).set_input_files(str(a))
    inputs.nth(1).set_input_files(str(b))
    before = page.locator("#view .result").get_attribute("data-compared") or "0"
    page.get_by_role("button", name="Compare", exact=True).click()
    page.locator(f'#view .result[data-compared="{int(before) + 1}"] .alert').wait_for()


@pytest.mark.lfw
def test_compare_page_shows_both_photos_with_their_boxes(page, server, lfw_people):
    same, other = sorted(lfw_people[0].glob("*.jpg")), sorted(lfw_people[1].glob("*.jpg"))
    sign_in(page, _key(server, "id check desk", ["compare"])["key"])
    page.locator("#app").wait_for()
    assert page.locator("#nav a").all_inner_texts() == ["Compare"]  # a compare key sees nothing else
    open_tab(page, "Compare")
    _compare(page, same[0], same[1])
    result = page.locator("#view .result")
    assert result.locator(".badge").first.inner_text().lower() == "same person", result.inner_text()
    canvases = result.locator("canvas.photo")
    assert canvases.count() == 2 and all(canvases.nth(i).get_attribute("data-boxes") == "1" for i in range(2))
    assert result.locator(".bar-mark").count() == 1
    assert "Threshold" in result.inner_text() and "false-accept rate" in result.inner_text()
    screenshot(page, "compare")

    _compare(page, same[0], other[0])
    assert result.locator(".badge").first.inner_text().lower() in ("different people", "not confirmed")
    screenshot(page, "compare-different")


def test_compare_tab_needs_the_compare_scope(page, server):
    sign_in(page, _key(server, "door", ["verify"])["key"])
    page.locator("#app").wait_for()
    assert "Compare" not in page.locator("#nav a").all_inner_texts()


@pytest.mark.lfw
def test_compare_at_phone_width(browser, server, lfw_people):
    context, page, errors = new_page(browser, server, 390, 844)
    try:
        photos = sorted(lfw_people[0].glob("*.jpg"))
        sign_in(page)
        page.locator("#app").wait_for()
        open_tab(page, "Compare")
        _compare(page, photos[0], photos[1])
        assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
        screenshot(page, "phone-compare")
    finally:
        context.close()
    assert not errors, errors


def test_keys_page_lists_creates_shows_once_and_revokes(page, server):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server)
    old = _key(server, "old door", ["verify"])
    sign_in(page)
    page.locator("#app").wait_for()
    open_tab(page, "Keys")
    table = page.locator("#view table.keys")
    table.wait_for()
    mine = page.locator("#view tr.key.mine")
    assert mine.count() == 1 and "this key" in mine.inner_text().lower()
    assert mine.get_by_role("button", name="Revoke").count() == 0  # a key cannot revoke itself
    me = httpx.get(f"{server}/me", headers=ADMIN).json()
    assert mine.get_attribute("data-key-id") == str(me["id"])
    screenshot(page, "keys")

    page.get_by_label("Name").fill("front door 2")
    page.locator("#view input[name=scope][value=verify]").check()
    page.locator("#view input[name=scope][value=compare]").check()
    page.get_by_role("button", name="Create the key").click()
    secret = page.locator("#view input.secret")
    secret.wait_for()
    plaintext = secret.input_value()
    assert (
        plaintext.startswith("fg_")
        and "shown this once" in page.locator("#view .result .alert").first.inner_text()
    )
    page.get_by_role("button", name="Copy").click()
    page.locator("#view .result", has_text="Copied.").wait_for()
    assert page.evaluate("navigator.clipboard.readText()") == plaintext
    who = httpx.get(f"{server}/me", headers={"Authorization": f"Bearer {plaintext}"}).json()
    assert who["name"] == "front door 2" and who["scopes"] == ["compare", "verify"]
    assert page.locator("#view tr.key", has_text="front door 2").count() == 1
    assert page.get_by_label("Name").input_value() == ""
    screenshot(page, "keys-created")

    row = page.locator(f'#view tr.key[data-key-id="{old["id"]}"]')
    row.get_by_role("button", name="Revoke").click()
    dialog = page.locator("dialog.confirm")
    assert "old door" in dialog.inner_text()
    screenshot(page, "keys-revoke-confirm")
    dialog.get_by_role("button", name="Cancel").click()
    assert httpx.get(f"{server}/me", headers={"Authorization": f"Bearer {old['key']}"}).status_code == 200
    row.get_by_role("button", name="Revoke").click()
    dialog.get_by_role("button", name="Revoke").click()
    page.locator(f'#view tr.key.revoked[data-key-id="{old["id"]}"]').wait_for()
    assert "revoked" in page.locator("#view").inner_text()
    assert httpx.get(f"{server}/me", headers={"Authorization": f"Bearer {old['key']}"}).status_code == 401


def test_keys_page_at_phone_width(browser, server):
    context, page, errors = new_page(browser, server, 390, 844)
    try:
        sign_in(page)
        page.locator("#app").wait_for()
        open_tab(page, "Keys")
        page.locator("#view table.keys").wait_for()
        assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
        screenshot(page, "phone-keys")
    finally:
        context.close()
    assert not errors, errors
