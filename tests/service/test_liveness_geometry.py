"""Liveness at the landmark level: pose measures, the homography fit, the planarity figure and
the decision on synthesised presentations (bench/liveness_presentations.py); no model needed."""

from __future__ import annotations

import numpy as np
import pytest

from bench import liveness_presentations as lp
from service.liveness.challenges import draw_steps
from service.liveness.planarity import PLANAR_LIMIT, fit_homography, residual, sequence_residual, transfer
from service.liveness.pose import ROTATIONS, STEPS, pose_of, step
from service.liveness.sequence import judge

# a frontal face as MTCNN finds it on a 250x250 LFW photo
PHOTO = np.array([[104.0, 112.0], [146.0, 111.0], [125.0, 136.0], [108.0, 158.0], [143.0, 157.0]])
# bench/liveness.py's measured MTCNN noise, per landmark, in inter-eye distances (rounded up)
SIGMA = np.array([0.02, 0.021, 0.023, 0.025, 0.026])
CHALLENGES = [
    ["turn_left", "look_up"],
    ["turn_right", "come_closer", "look_down"],
    ["look_down", "turn_left"],
]


def posed(yaw=0.0, pitch=0.0, distance=500.0, depth=lp.DEPTH):
    return lp.project(
        lp.lift(PHOTO, depth), lp.Keyframe(yaw, pitch, 0.0, distance), lp.HEAD_PIVOT, np.zeros(2)
    )


def test_pose_measures_follow_the_head():
    front = pose_of(posed())
    assert abs(front.yaw) < 0.05
    assert pose_of(posed(yaw=25)).yaw > front.yaw + 0.3  # own left: the nose goes to the image's right
    assert pose_of(posed(yaw=-25)).yaw < front.yaw - 0.3
    assert pose_of(posed(pitch=20)).pitch < front.pitch - 0.07  # looking up
    assert pose_of(posed(pitch=-20)).pitch > front.pitch + 0.07
    assert pose_of(posed(distance=380)).size / front.size > 1.2
    with pytest.raises(ValueError, match="valid: turn_left"):
        step("jump")


def test_homography_fit_recovers_a_known_homography_and_fits_any_flat_motion():
    h = np.array([[1.1, 0.05, 3.0], [-0.02, 0.95, -4.0], [2e-4, -1e-4, 1.0]])
    dst = transfer(h, PHOTO)
    got = fit_homography(PHOTO, dst)
    assert np.allclose(got / got[2, 2], h, atol=1e-6)
    flat = lp.lift(PHOTO, np.zeros(5))
    for yaw, pitch in [(30, 0), (0, 35), (-40, 20)]:
        moved = lp.project(flat, lp.Keyframe(yaw, pitch, 5.0, 400.0), 0.0, np.zeros(2))
        assert residual(PHOTO, moved) < 1e-9  # a plane's points always follow a homography
    assert residual(posed(), posed(yaw=30)) > 0.05  # a head's nose does not


def test_the_figure_rests_on_the_nose():
    """A face whose nose lies in the eye-mouth plane moves like a print."""
    flat_face = np.zeros(5)
    seq = [posed(y, 0, 500, flat_face) for y in (0, 15, 30, -15, -30)]
    assert sequence_residual(seq) < 1e-9
    seq = [posed(y) for y in (0, 15, 30, -15, -30)]
    assert sequence_residual(seq) > PLANAR_LIMIT


def test_steps_are_drawn_at_random_two_to_four_with_a_rotation():
    rng = np.random.default_rng(0)
    drawn = [draw_steps(rng) for _ in range(300)]
    assert {len(d) for d in drawn} == {2, 3, 4}
    assert all(len(set(d)) == len(d) and set(d) <= set(STEPS) for d in drawn)
    assert all(any(s in ROTATIONS for s in d) for d in drawn)
    assert len({tuple(d) for d in drawn}) > 50


@pytest.mark.parametrize("steps", CHALLENGES)
def test_bona_fide_head_turns_pass(steps):
    rng = np.random.default_rng(1)
    results = [judge(lp.bona_fide(PHOTO, steps, rng, SIGMA, nose_scale=1.0), steps) for _ in range(20)]
    assert sum(j.live for j in results) >= 18, [j.reasons for j in results if not j.live]


@pytest.mark.parametrize("steps", CHALLENGES)
def test_stills_tilted_and_curved_prints_fail(steps):
    """Stills and tilted prints never pass; a print bent on a cylinder has some depth and rarely
    does (bench/liveness.py measures how rarely: its APCER)."""
    rng = np.random.default_rng(2)
    curved_accepted = 0
    for _ in range(40):
        still = judge(lp.repeated_still(PHOTO, 12, rng, SIGMA), steps)
        assert not still.live and not still.steps_passed
        assert not judge(lp.tilted_print(PHOTO, steps, rng, SIGMA), steps).live
        curved_accepted += judge(lp.curved_print(PHOTO, steps, rng, SIGMA), steps).live
    assert curved_accepted <= 6  # 15 %


def test_steps_must_come_in_order():
    seq = [posed(0), posed(0, 22), posed(0, 0), posed(30), posed(0)]
    assert judge(seq, ["look_up", "turn_left"]).live
    j = judge(seq, ["turn_left", "look_up"])
    assert not j.live
    assert [s.passed for s in j.steps] == [True, False]
    assert j.steps[0].frame == 4
    assert any(r["reason"] == "step_not_reached" and r["step"] == "look_up" for r in j.reasons)
