"""Quality measures and the similarity-transform alignment."""

import numpy as np

from service.pipeline.align import align_face, similarity_transform
from service.pipeline.face import Face
from service.pipeline.quality import QualityLimits, assess, sharpness, yaw_asymmetry

FRONTAL = np.array([[40, 50], [80, 50], [60, 70], [45, 90], [75, 90]], dtype=np.float32)


def test_similarity_transform_recovers_a_known_transform():
    theta, scale, shift = 0.3, 1.7, np.array([12.0, -5.0])
    rot = scale * np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    dst = FRONTAL @ rot.T + shift
    m = similarity_transform(FRONTAL, dst)
    assert np.allclose(m[:, :2], rot, atol=1e-9) and np.allclose(m[:, 2], shift, atol=1e-6)


def test_align_puts_landmarks_on_template():
    img = np.zeros((200, 200, 3), np.uint8)
    for x, y in FRONTAL.astype(int):
        img[y - 1 : y + 2, x - 1 : x + 2] = 255
    template = FRONTAL * 0.5 + 10
    crop = align_face(img, FRONTAL, template, (100, 110))
    assert crop.shape == (110, 100, 3)
    for x, y in template:
        assert crop[int(round(y)), int(round(x)), 0] > 100


def test_yaw_is_zero_when_frontal_and_grows_when_turned():
    assert yaw_asymmetry(FRONTAL) < 0.01
    turned = FRONTAL.copy()
    turned[2, 0] = 76  # nose near the right eye
    assert yaw_asymmetry(turned) > 0.7


def test_sharpness_drops_with_blur():
    rng = np.random.default_rng(0)
    sharp = rng.integers(0, 255, (112, 112, 3), dtype=np.uint8)
    flat = np.full((112, 112, 3), 128, np.uint8)
    assert sharpness(sharp) > 1000 > sharpness(flat)


def test_assess_reports_every_problem_with_value_and_limit():
    face = Face((0, 0, 30, 30), 0.5, FRONTAL * 0.2)
    limits = QualityLimits(min_eye_distance=20, min_sharpness=15, max_yaw=0.45, min_detection_score=0.9)
    report = assess(face, np.full((112, 112, 3), 128, np.uint8), limits)
    reasons = {p["reason"] for p in report.problems}
    assert reasons == {"face_too_small", "too_blurred", "low_confidence"}
    small = next(p for p in report.problems if p["reason"] == "face_too_small")
    assert small["value"] == 8.0 and small["limit"] == 20
    assert "8 px between the eyes, 20 needed" in small["message"]
