"""The console's error messages in words that match the evidence (issue 15 item 6), in chromium.

No API parameter names (replace=true, allow_duplicate=true, face_index, quality_filter=...) and no
raw byte counts; the duplicate-face message says who once; a face too small to be detected says
so with the detector's minimum size; the quality measure that failed is highlighted. Screenshots:
artifacts/console/enrol-duplicate, enrol-too-small-to-detect, enrol-failing-measure.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tests.service.conftest import ADMIN_KEY
from tests.service.console_browser import (
    alert_text,
    choose_photo,
    console_server,
    enrol_lfw_person,
    screenshot,
    sign_in,
)

pytestmark = [pytest.mark.browser, pytest.mark.lfw]
pytest_plugins = ["tests.service.console_browser"]
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
UPLOAD_LIMIT = 300 * 1024
API_WORDS = ("replace=", "allow_duplicate", "face_index", "face_selection", "quality_filter", "=true")


server = console_server("console-messages", max_upload_bytes=UPLOAD_LIMIT)


@pytest.fixture(scope="module")
def person(server, lfw_people):
    a = lfw_people[0]
    enrol_lfw_person(server, a, "lfw-a")
    return a


@pytest.fixture
def page(page):
    """Every test here starts signed in with the admin key."""
    sign_in(page)
    page.locator("#app").wait_for()
    return page


def _enrol(page, who: str, person_id: str, photo, **kw) -> str:
    page.get_by_label("Name").fill(who)
    page.get_by_label("Person id (optional)").fill(person_id)
    choose_photo(page, photo, **kw)
    page.evaluate("document.querySelector('#view .result').replaceChildren()")
    page.get_by_role("button", name="Enrol", exact=True).click()
    page.locator("#view .result .alert").wait_for()
    text = page.locator("#view .result").inner_text()
    assert not [w for w in API_WORDS if w in text], text
    return alert_text(page)


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=92)
    return buf.getvalue()


def test_already_enrolled_names_the_console_option_not_the_parameter(page, person):
    text = _enrol(page, "Anyone", "lfw-a", sorted(person.glob("*.jpg"))[1])
    assert "The person id lfw-a is already enrolled." in text, text
    assert "replace the existing photo" in text, text


def test_duplicate_face_says_who_once(page, person):
    name = person.name.replace("_", " ")
    text = _enrol(page, "Someone Else", "lfw-dup", sorted(person.glob("*.jpg"))[1])
    assert page.locator("#view .result .alert").get_attribute("data-code") == "duplicate_face"
    assert text.count(name) == 1 and text.count("lfw-a") == 1, text
    assert "enrol even if the face matches someone" in text, text
    screenshot(page, "enrol-duplicate")


def test_upload_over_the_limit_in_megabytes_not_bytes(page, person):
    noise = np.random.default_rng(0).integers(0, 256, (400, 400, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, "PNG")
    assert len(buf.getvalue()) > UPLOAD_LIMIT
    text = _enrol(page, "Big", "big", buf.getvalue())
    assert "upload limit of 300 KB" in text, text
    assert str(UPLOAD_LIMIT) not in text and "bytes" not in text, text


def test_face_too_small_to_detect_says_the_minimum_size(page, person):
    small = Image.open(sorted(person.glob("*.jpg"))[1]).resize((64, 64))
    text = _enrol(page, "Tiny", "tiny", _jpeg(small), name="tiny.jpg", mime="image/jpeg")
    assert "faces smaller than 40 pixels across are not detected" in text, text
    screenshot(page, "enrol-too-small-to-detect")


def test_the_failing_quality_measure_is_highlighted(page, person):
    # half size: the face is still found (box over 40 px) but its eyes are under 24 px apart
    photo = Image.open(sorted(person.glob("*.jpg"))[2])
    small = photo.resize((photo.width // 2, photo.height // 2))
    text = _enrol(page, "Small", "small", _jpeg(small), name="small.jpg", mime="image/jpeg")
    assert page.locator("#view .result .alert").get_attribute("data-code") == "low_quality", text
    failing = page.locator("#view .result .quality dt.failing")
    assert failing.all_inner_texts() == ["Face size"], page.locator("#view .result").inner_text()
    dd = page.locator("#view .result .quality dd.failing").inner_text()
    assert "needs at least 24 px" in dd, dd
    screenshot(page, "enrol-failing-measure")
