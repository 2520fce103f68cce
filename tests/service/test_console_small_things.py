"""Small things of the console (issue 15 item 10), in chromium.

Photos dropped on the photo field or pasted; the enrol form empties after a success; an error about
a field goes once the field is filled; the webcam preview is mirrored with a face guide; an export
is confirmed. Screenshots: artifacts/console/enrol-dropping, enrol-webcam-guide, people-exported.
"""

from __future__ import annotations

import base64

import pytest

from tests.service.console_browser import (
    alert_text,
    console_server,
    enrol_lfw_person,
    open_tab,
    screenshot,
    sign_in,
    wait_until,
)

pytestmark = [pytest.mark.browser, pytest.mark.lfw]
pytest_plugins = ["tests.service.console_browser"]

# a DataTransfer holding one photo, built in the page (what a drop or a paste hands over)
DATA_TRANSFER = """([b64, name, type]) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const dt = new DataTransfer();
  dt.items.add(new File([bytes], name, { type }));
  return dt;
}"""


server = console_server("console-small")


@pytest.fixture
def page(page):
    """Every test here starts signed in with the admin key."""
    sign_in(page)
    page.locator("#app").wait_for()
    return page


def _transfer(page, photo, name="dropped.jpg"):
    return page.evaluate_handle(
        DATA_TRANSFER, [base64.b64encode(photo.read_bytes()).decode(), name, "image/jpeg"]
    )


def test_a_dropped_photo_enrols_and_the_form_empties_after(page, lfw_people):
    person = lfw_people[0]
    photo = sorted(person.glob("*.jpg"))[0]
    field = page.locator("#view fieldset.photo-input")
    dt = _transfer(page, photo)
    field.dispatch_event("dragover", {"dataTransfer": dt})
    assert "dropping" in field.get_attribute("class")
    screenshot(page, "enrol-dropping")
    field.dispatch_event("drop", {"dataTransfer": dt})
    assert "dropping" not in field.get_attribute("class")
    page.locator("#view .preview-box").filter(has_text="dropped.jpg").wait_for()

    page.get_by_label("Name").fill(person.name.replace("_", " "))
    page.get_by_label("Person id (optional)").fill("dropped-1")
    page.locator("details.options summary").click()
    page.get_by_label("Use the largest face when the photo has several").check()
    page.get_by_role("button", name="Enrol", exact=True).click()
    page.locator("#view .result .alert.ok").wait_for()
    assert "is enrolled as person id" in alert_text(page)
    # the result stays; the form is ready for the next person
    assert page.get_by_label("Name").input_value() == ""
    assert page.get_by_label("Person id (optional)").input_value() == ""
    assert not page.get_by_label("Use the largest face when the photo has several").is_checked()
    assert page.locator("#view .preview-box").is_hidden()


def test_a_dropped_file_that_is_not_a_photo_is_refused_in_words(page):
    dt = page.evaluate_handle(DATA_TRANSFER, [base64.b64encode(b"hello").decode(), "notes.txt", "text/plain"])
    page.locator("#view fieldset.photo-input").dispatch_event("drop", {"dataTransfer": dt})
    message = page.locator("#view fieldset.photo-input .alert.warn")
    assert message.inner_text() == "The dropped file is not a photo: choose a JPEG, PNG or WebP picture."
    assert page.locator("#view .preview-box").is_hidden()


def test_a_pasted_photo_is_identified(page, lfw_people):
    open_tab(page, "Identify")
    dt = _transfer(page, sorted(lfw_people[1].glob("*.jpg"))[0], "image.jpg")
    page.evaluate("dt => document.dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt }))", dt)
    page.locator("#view .preview-box").filter(has_text="image.jpg").wait_for()
    page.get_by_role("button", name="Identify", exact=True).click()
    page.locator("#view .result .face-answer").first.wait_for()


def test_the_stale_name_error_goes_when_the_name_is_filled(page):
    page.get_by_role("button", name="Enrol", exact=True).click()
    alert = page.locator("#view .result .alert.error")
    assert alert.inner_text() == "Enter the person's name."
    page.get_by_label("Name").fill("Ada")
    alert.wait_for(state="detached")
    page.get_by_role("button", name="Enrol", exact=True).click()
    assert (
        page.locator("#view .result .alert.error").inner_text()
        == "Choose a photo or take one with the webcam."
    )


def test_the_webcam_preview_is_mirrored_with_a_face_guide(page):
    page.get_by_role("button", name="Use the webcam").click()
    video = page.locator("#view video.camera")
    video.wait_for()
    wait_until(page, "document.querySelector('#view video.camera').videoWidth > 0")
    assert video.evaluate("v => getComputedStyle(v).transform") == "matrix(-1, 0, 0, 1, 0, 0)"
    guide = page.locator("#view .face-guide")
    assert guide.is_visible()
    g, v = guide.bounding_box(), video.bounding_box()
    assert v["x"] < g["x"] and g["x"] + g["width"] < v["x"] + v["width"]  # the oval sits inside the picture
    assert "Put your face inside the oval" in page.locator("#view .camera-box").inner_text()
    screenshot(page, "enrol-webcam-guide")
    page.get_by_role("button", name="Take the photo").click()
    page.locator("#view .preview-box").filter(has_text="webcam-").wait_for()


def test_an_export_is_confirmed(page, server, lfw_people):
    enrol_lfw_person(server, lfw_people[2], "export-me", "Export Me", allow_duplicate="true")
    open_tab(page, "People")
    row = page.locator('li.person[data-person-id="export-me"]')
    with page.expect_download():
        row.get_by_role("button", name="Export").click()
    toast = page.locator(".toast").filter(has_text="Exported")
    toast.wait_for()
    assert "Export Me (export-me)" in toast.inner_text() and "facegate-export-me.json" in toast.inner_text()
    screenshot(page, "people-exported")
