"""The web console in a real headless chromium against the real app (uvicorn, SQLite, shipped models).

Screenshots of every page land in artifacts/console/ (git-ignored) for a person to look at.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from tests.service.conftest import ADMIN_KEY
from tests.service.console_browser import (
    LOW_QUALITY_PROBLEM,
    alert_text,
    choose_photo,
    console_server,
    exif_rotated_jpeg,
    face_free_image,
    new_page,
    open_tab,
    screenshot,
    side_by_side,
    sign_in,
    wait_until,
)

pytestmark = pytest.mark.browser
pytest_plugins = ["tests.service.console_browser"]

TABS = ["Enrol", "Verify", "Identify", "People", "Model"]


server = console_server("console")


def test_sign_in_screen_and_wrong_key(page):
    page.goto("/")
    screenshot(page, "signin")
    sign_in(page, "fg_not_a_real_key_0000000000000000")
    message = page.locator("#signin-message")
    message.wait_for()
    assert "not accepted" in message.inner_text() and "unknown or revoked" in message.inner_text()
    assert page.locator("#app").is_hidden()
    screenshot(page, "signin-wrong-key")


def test_scopes_hide_tabs_and_a_revoked_key_returns_to_sign_in(page, server):
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    created = httpx.post(f"{server}/keys", json={"name": "door 3", "scopes": ["verify"]}, headers=admin)
    assert created.status_code == 201, created.text
    sign_in(page, created.json()["key"])
    page.locator("#app").wait_for()
    assert page.locator("#nav a").all_inner_texts() == ["Verify", "Identify", "Liveness"]
    assert "door 3" in page.locator("#who").inner_text()
    assert page.evaluate("sessionStorage.getItem('facegate.apiKey')") == created.json()["key"]
    # the key is revoked while the tab is open: the next call sends the user back to sign-in
    assert httpx.delete(f"{server}/keys/{created.json()['id']}", headers=admin).status_code == 204
    open_tab(page, "Identify")
    choose_photo(page, face_free_image())
    page.get_by_role("button", name="Identify").click()
    page.locator("#signin").wait_for()
    assert "not accepted" in page.locator("#signin-message").inner_text()
    assert page.evaluate("sessionStorage.getItem('facegate.apiKey')") is None


def test_face_free_photo_and_non_image_give_readable_errors(page):
    sign_in(page)
    page.get_by_label("Name").fill("Nobody")
    choose_photo(page, face_free_image(), "gradient.png")
    page.locator(".preview-box img").wait_for()
    page.get_by_role("button", name="Enrol").click()
    page.locator("#view .result .alert.error").wait_for()
    text = alert_text(page)
    assert "No face found" in text and "no face was found" in text.lower()
    assert "{" not in text
    screenshot(page, "enrol-no-face")

    choose_photo(page, b"name,badge\nAda,42\n", "people.csv", "text/csv")
    page.get_by_role("button", name="Enrol").click()
    page.locator("#view .result .alert.error").filter(has_text="Unsupported").wait_for()
    text = alert_text(page)
    assert "Unsupported image format" in text and "not a JPEG, PNG or WebP image" in text
    assert "Choose a JPEG, PNG or WebP photo" in text and "{" not in text
    screenshot(page, "enrol-not-image")


def test_every_rejection_reason_is_listed_with_the_face_box(page):
    sign_in(page)
    page.route(
        "**/enroll",
        lambda route: route.fulfill(
            status=422, content_type="application/problem+json", body=json.dumps(LOW_QUALITY_PROBLEM)
        ),
    )
    page.get_by_label("Name").fill("Small Face")
    choose_photo(page, face_free_image(1))
    page.get_by_role("button", name="Enrol").click()
    items = page.locator("#view .result .reasons li")
    items.first.wait_for()
    assert items.all_inner_texts() == [
        "The face is too small: 38 px between the eyes, 60 needed.",
        "The face is too blurred: sharpness 4.2, 15.0 needed.",
    ]
    assert page.locator("#view .result canvas.photo").get_attribute("data-boxes") == "1"
    assert "38 px between the eyes" in page.locator("#view .result .quality").inner_text()
    screenshot(page, "enrol-low-quality")


def test_face_boxes_are_drawn_on_the_exif_rotated_photo(page):
    sign_in(page)
    page.locator("#app").wait_for()
    data = list(exif_rotated_jpeg())
    size_and_pixels = page.evaluate(
        """async (bytes) => {
            const { photoWithFaces } = await import('/static/js/overlay.js');
            const blob = new Blob([new Uint8Array(bytes)], { type: 'image/jpeg' });
            const fig = await photoWithFaces(blob, [{ face: { box: [10, 10, 20, 20], landmarks: [] }, tone: 'ok' }]);
            const c = fig.querySelector('canvas');
            const px = (x, y) => Array.from(c.getContext('2d').getImageData(x, y, 1, 1).data.slice(0, 3));
            return [c.width, c.height, px(50, 60), px(50, 150)];
        }""",
        data,
    )
    width, height, top, bottom = size_and_pixels
    assert (width, height) == (100, 200)
    assert top[0] > 200 and top[2] < 60, top  # red on top, as the service sees it after EXIF rotation
    assert bottom[2] > 200 and bottom[0] < 60, bottom


def test_webcam_capture_preview_retake_and_enrol(page):
    sign_in(page)
    page.get_by_role("button", name="Use the webcam").click()
    page.locator("video.camera").wait_for()
    wait_until(page, "document.querySelector('video.camera').videoWidth > 0")
    page.get_by_role("button", name="Take the photo").click()
    page.locator(".preview-box img").wait_for()
    assert "webcam-" in page.locator(".preview-box .hint").inner_text()
    page.get_by_role("button", name="Retake").click()
    wait_until(page, "document.querySelector('video.camera').videoWidth > 0")
    page.get_by_role("button", name="Take the photo").click()
    page.get_by_label("Name").fill("Camera Test")
    page.get_by_role("button", name="Enrol").click()
    page.locator("#view .result .alert").wait_for()
    # chromium's fake camera shows a moving pattern, not a face
    assert "No face found" in alert_text(page)
    screenshot(page, "enrol-webcam")


def test_people_list_pages_and_searches(page):
    everyone = [
        {
            "person_id": f"p{i:03d}",
            "name": f"Person {i}",
            "created_at": "2025-01-02T03:04:05Z",
            "updated_at": "2025-01-02T03:04:05Z",
            "model_versions": ["v1"],
        }
        for i in range(45)
    ]

    def people(route):
        query = parse_qs(urlparse(route.request.url).query)
        offset, limit, q = int(query["offset"][0]), int(query["limit"][0]), query.get("q", [""])[0]
        hits = [p for p in everyone if q.lower() in (p["name"] + p["person_id"]).lower()]
        body = {"items": hits[offset : offset + limit], "total": len(hits), "offset": offset, "limit": limit}
        route.fulfill(status=200, content_type="application/json", body=json.dumps(body))

    page.route("**/people?*", people)
    sign_in(page)
    open_tab(page, "People")
    pager = page.locator(".pager .note")
    pager.filter(has_text="1–20 of 45").wait_for()
    page.get_by_role("button", name="Next →").click()
    pager.filter(has_text="21–40 of 45").wait_for()
    assert page.locator("li.person").first.get_attribute("data-person-id") == "p020"
    page.get_by_label("Search people").fill("Person 4")
    pager.filter(has_text="1–6 of 6").wait_for()  # Person 4 and Person 40-44
    assert page.get_by_role("button", name="← Previous").is_disabled()


def test_model_page_shows_the_card_and_calibration_plot(page):
    sign_in(page)
    open_tab(page, "Model")
    page.locator("svg.plot polyline.curve").wait_for()
    assert page.locator("svg.plot line.threshold").count() >= 1
    text = page.locator("#view").inner_text()
    assert "Calibration" in text and "Evaluation" in text and "Licence" in text
    screenshot(page, "model")


def test_phone_width_has_no_horizontal_scroll(browser, server):
    context, page, errors = new_page(browser, server, 375, 812)
    try:
        page.goto("/")
        screenshot(page, "phone-signin")
        sign_in(page)
        page.locator("#app").wait_for()
        for tab in TABS:
            open_tab(page, tab)
            if tab == "Model":
                page.locator("svg.plot").wait_for()
            page.wait_for_load_state("networkidle")
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"{tab}: {overflow}px wider than a 375px phone"
            screenshot(page, f"phone-{tab.lower()}")
        open_tab(page, "Enrol")
        page.get_by_label("Name").fill("Phone")
        choose_photo(page, face_free_image(2))
        page.get_by_role("button", name="Enrol").click()
        page.locator("#view .result .alert").wait_for()
        assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
        screenshot(page, "phone-enrol-error")
    finally:
        context.close()
    assert not errors, errors


@pytest.mark.lfw
def test_enrol_verify_identify_list_export_delete_an_lfw_person(page, server, lfw_people, tmp_path):
    person, other = lfw_people[0], lfw_people[1]
    photos = sorted(person.glob("*.jpg"))
    name = person.name.replace("_", " ")
    sign_in(page)

    page.get_by_label("Name").fill(name)
    page.get_by_label("Person id (optional)").fill("lfw-0001")
    choose_photo(page, photos[0])
    page.locator("details.options summary").click()
    page.get_by_label("Use the largest face when the photo has several").check()
    page.get_by_role("button", name="Enrol").click()
    page.locator("#view .result .alert").wait_for()
    assert "is enrolled as person id" in alert_text(page), alert_text(page)
    assert page.locator("#view .result canvas.photo").get_attribute("data-boxes") == "1"
    assert "between the eyes" in page.locator("#view .result .quality").inner_text()
    screenshot(page, "enrol")

    open_tab(page, "Verify")
    page.get_by_label("Person", exact=True).fill(name.split()[-1])
    page.locator(".suggestions button").filter(has_text="lfw-0001").click()
    assert "lfw-0001" in page.locator(".chosen").inner_text()
    choose_photo(page, photos[1])
    page.get_by_role("button", name="Verify").click()
    page.locator("#view .result .alert").wait_for()
    assert page.locator("#view .result .badge").first.inner_text().lower() == "match", alert_text(page)
    assert page.locator("#view .result .bar-mark").count() == 1
    screenshot(page, "verify")

    open_tab(page, "Identify")
    choose_photo(page, side_by_side(photos[2], sorted(other.glob("*.jpg"))[0], tmp_path / "two.jpg"))
    page.get_by_label("Faces").select_option("all")
    page.get_by_role("button", name="Identify").click()
    page.locator("#view .result .face-answer").first.wait_for()
    answers = page.locator("#view .result .face-answer")
    assert answers.count() >= 2
    assert int(page.locator("#view .result canvas.photo").get_attribute("data-boxes")) == answers.count()
    matched = page.locator('#view .result .face-answer[data-result="match"]')
    assert name in " ".join(matched.all_inner_texts()), "the enrolled person was not identified"
    text = page.locator("#view .result").inner_text()
    assert "Gallery size" in text and "false-positive identification rate" in text
    screenshot(page, "identify")

    open_tab(page, "People")
    row = page.locator('li.person[data-person-id="lfw-0001"]')
    row.wait_for()
    wait_until(page, "document.querySelector('li.person img.thumb').naturalWidth > 0")
    assert name in row.inner_text() and "enrolled" in row.inner_text()
    with page.expect_download() as download:
        row.get_by_role("button", name="Export").click()
    exported = json.loads(Path(download.value.path()).read_text())
    assert exported["person"]["person_id"] == "lfw-0001"
    screenshot(page, "people")

    row.get_by_role("button", name="Delete").click()
    dialog = page.locator("dialog.confirm")
    assert name in dialog.inner_text()
    screenshot(page, "people-delete-confirm")
    dialog.get_by_role("button", name="Delete").click()
    page.locator(".people .empty").wait_for()
    assert page.locator(".toast").filter(has_text="was deleted").count() == 1
    gone = httpx.get(f"{server}/people/lfw-0001", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert gone.status_code == 404
