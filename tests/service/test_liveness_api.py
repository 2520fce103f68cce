"""POST /liveness/challenge and /liveness/check: every refusal, and the liveness token on /verify
and /identify (bound to the live face, single use, required for some keys)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import select, text, update

from service.gallery.audit import Caller
from service.gallery.tables import AuditEvent, LivenessChallenge, LivenessToken, utcnow
from service.liveness.tokens import TokenStore
from service.pipeline.pipeline import FaceSelection
from tests.service.api_helpers import assert_problem, post_photo
from tests.service.console_browser import face_free_image


def _key(client, *scopes: str) -> tuple[str, int]:
    r = client.post("/keys", json={"name": "-".join(scopes), "scopes": list(scopes)})
    assert r.status_code == 201, r.text
    return r.json()["key"], r.json()["id"]


def _as(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def _check(client, challenge_id: str, frames: list[bytes], headers=None):
    files = [("frames", (f"{i}.jpg", f, "image/jpeg")) for i, f in enumerate(frames)]
    return client.post("/liveness/check", data={"challenge_id": challenge_id}, files=files, headers=headers)


def _challenge(client, headers=None) -> dict:
    r = client.post("/liveness/challenge", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


NO_FACE = [face_free_image(i) for i in range(4)]


def test_a_challenge_is_two_to_four_random_steps_expiring_in_30_s(client):
    c = _challenge(client)
    assert c["challenge_id"].startswith("lc_") and 2 <= len(c["steps"]) <= 4
    assert len(c["instructions"]) == len(c["steps"]) and all(c["instructions"])
    with client.app.state.facegate.sessions() as s:
        row = s.get(LivenessChallenge, c["challenge_id"])
        assert abs((row.expires_at - row.created_at).total_seconds() - 30) < 1e-3
    assert c["challenge_id"] != _challenge(client)["challenge_id"]


def test_the_challenge_needs_the_verify_scope(client):
    enrol_key, _ = _key(client, "enroll")
    assert_problem(client.post("/liveness/challenge", headers=_as(enrol_key)), 403, "forbidden")
    client.headers.pop("Authorization")
    assert_problem(client.post("/liveness/challenge"), 401, "unauthorized")


def test_unknown_malformed_and_other_keys_challenges_are_refused(client):
    assert_problem(_check(client, "lc_" + "x" * 32, NO_FACE), 404, "challenge_not_found")
    assert_problem(_check(client, "not-a-challenge", NO_FACE), 422, "invalid_request")
    r = client.post("/liveness/check", files=[("frames", ("a.png", NO_FACE[0], "image/png"))] * 3)
    assert_problem(r, 422, "invalid_request")  # no challenge_id
    door, _ = _key(client, "verify")
    c = _challenge(client, _as(door))
    assert_problem(_check(client, c["challenge_id"], NO_FACE), 404, "challenge_not_found")  # the admin's
    assert _check(client, c["challenge_id"], NO_FACE, _as(door)).status_code == 200  # still unused


def test_a_challenge_is_used_once_and_expires(client):
    c = _challenge(client)
    first = _check(client, c["challenge_id"], NO_FACE)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["live"] is False and body["liveness_token"] is None
    assert {r["reason"] for r in body["reasons"]} == {"no_face", "step_not_reached"}
    assert [r["frame"] for r in body["reasons"] if r["reason"] == "no_face"] == [1, 2, 3, 4]
    assert [s["passed"] for s in body["steps"]] == [False] * len(c["steps"])
    assert_problem(_check(client, c["challenge_id"], NO_FACE), 409, "challenge_used")
    old = _challenge(client)
    with client.app.state.facegate.sessions.begin() as s:
        s.execute(
            update(LivenessChallenge)
            .where(LivenessChallenge.id == old["challenge_id"])
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    assert_problem(_check(client, old["challenge_id"], NO_FACE), 409, "challenge_expired")


def test_frames_may_come_as_json(client):
    import base64

    c = _challenge(client)
    frames = [base64.b64encode(f).decode() for f in NO_FACE]
    r = client.post("/liveness/check", json={"challenge_id": c["challenge_id"], "frames_base64": frames})
    assert r.status_code == 200 and r.json()["live"] is False and r.json()["frames"] == 4, r.text
    r = client.post(
        "/liveness/check", json={"challenge_id": c["challenge_id"], "frames_base64": frames, "x": 1}
    )
    assert_problem(r, 422, "invalid_request")


def test_frame_count_and_size_are_bounded_before_the_challenge_is_used(client):
    c = _challenge(client)
    assert_problem(_check(client, c["challenge_id"], NO_FACE[:1] * 33), 422, "too_many_frames")
    assert_problem(_check(client, c["challenge_id"], NO_FACE[:2]), 422, "too_many_frames")
    big = b"\xff\xd8" + b"\0" * (2 * 1024 * 1024 + 1)
    assert_problem(_check(client, c["challenge_id"], [*NO_FACE[:2], big]), 413, "image_too_large")
    assert_problem(
        _check(client, c["challenge_id"], [*NO_FACE[:2], b"not an image"]), 415, "unsupported_image"
    )
    r = client.post("/liveness/check", json={"challenge_id": c["challenge_id"], "frames_base64": ["%%"] * 3})
    assert_problem(r, 422, "invalid_request")
    other = _challenge(client)
    assert _check(client, other["challenge_id"], NO_FACE).status_code == 200


def test_challenges_survive_a_restart(make_client):
    first = make_client()
    c = _challenge(first)
    second = make_client()  # another replica (or a restart) on the same database
    assert _check(second, c["challenge_id"], NO_FACE).status_code == 200
    assert_problem(_check(first, c["challenge_id"], NO_FACE), 409, "challenge_used")


def test_of_checks_racing_for_one_challenge_exactly_one_gets_it(client):
    import threading

    from service.liveness.challenges import ChallengeStore
    from service.liveness.errors import ChallengeUsed

    state = client.app.state.facegate
    caller = Caller(None, "race", frozenset({"verify"}))
    for _ in range(5):
        c = ChallengeStore(state.sessions, 30).issue(caller)
        outcomes: list[str] = []
        start = threading.Barrier(4)

        def take(c=c, outcomes=outcomes, start=start) -> None:
            start.wait()
            try:
                ChallengeStore(state.sessions, 30).take(c.id, caller)
                outcomes.append("taken")
            except ChallengeUsed:
                outcomes.append("used")

        threads = [threading.Thread(target=take) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(outcomes) == ["taken", "used", "used", "used"]


# ---- the token on /verify and /identify (needs LFW faces) ----


@pytest.fixture
def two_people(client, lfw_people):
    a, b = (sorted(p.glob("*.jpg")) for p in lfw_people[:2])
    for pid, photos in (("a", a), ("b", b)):
        r = post_photo(
            client, "/enroll", photos[0], name=pid.upper(), person_id=pid, face_selection="largest"
        )
        assert r.status_code == 201, r.text
    return client, a, b


def _token_for(client, photo, key_id: int | None) -> str:
    """A token as a passed check issues it, for the face of ``photo`` (the token store itself)."""
    state = client.app.state.facegate
    rec = state.recognizer
    face = rec.pipeline.process(photo.read_bytes(), FaceSelection.largest).faces[0]
    token, _ = TokenStore(state.sessions, 60).issue(
        face.embedding, rec.version, "lc_test", 2.0, Caller(key_id, "t", frozenset())
    )
    return token


@pytest.mark.lfw
def test_a_token_authorises_one_decision_on_the_live_face(two_people):
    client, a, _ = two_people
    door, door_id = _key(client, "verify")
    token = _token_for(client, a[1], door_id)
    r = client.post(
        "/verify",
        files={"image": ("p.jpg", a[2].read_bytes(), "image/jpeg")},
        data={"person_id": "a", "liveness_token": token},
        headers=_as(door),
    )
    assert r.status_code == 200 and r.json()["match"] is True, r.text
    again = client.post(
        "/verify",
        files={"image": ("p.jpg", a[2].read_bytes(), "image/jpeg")},
        data={"person_id": "a", "liveness_token": token},
        headers=_as(door),
    )
    assert assert_problem(again, 403, "liveness_token_invalid")["reason"] == "used"
    with client.app.state.facegate.sessions() as s:
        rows = s.scalars(
            select(AuditEvent).where(AuditEvent.action == "verify").order_by(AuditEvent.id)
        ).all()
    assert rows[-2].detail["liveness"]["challenge_id"] == "lc_test"
    assert rows[-1].detail["liveness"] == {"refused": "liveness_token_invalid"}


@pytest.mark.lfw
def test_an_attackers_token_does_not_authorise_the_victims_photo(two_people):
    client, a, b = two_people
    door, door_id = _key(client, "verify")
    for route, fields in (("/verify", {"person_id": "a"}), ("/identify", {})):
        attacker = _token_for(client, b[1], door_id)  # the attacker passed the check with their own face
        victim = {"image": ("p.jpg", a[1].read_bytes(), "image/jpeg")}
        r = client.post(route, files=victim, data={**fields, "liveness_token": attacker}, headers=_as(door))
        assert_problem(r, 403, "liveness_token_mismatch")
        own = {"image": ("p.jpg", b[2].read_bytes(), "image/jpeg")}
        r = client.post(route, files=own, data={**fields, "liveness_token": attacker}, headers=_as(door))
        assert assert_problem(r, 403, "liveness_token_invalid")["reason"] == "used"  # spent by the attempt
    with client.app.state.facegate.sessions() as s:
        results = [
            e.result
            for e in s.scalars(select(AuditEvent).where(AuditEvent.action.in_(["verify", "identify"])))
        ]
    assert results.count("liveness_token_mismatch") == 2


@pytest.mark.lfw
def test_tokens_are_the_issuing_keys_and_expire(two_people):
    client, a, _ = two_people
    door, door_id = _key(client, "verify")
    other, _ = _key(client, "verify")
    token = _token_for(client, a[1], door_id)
    files = {"image": ("p.jpg", a[1].read_bytes(), "image/jpeg")}
    r = client.post(
        "/verify", files=files, data={"person_id": "a", "liveness_token": token}, headers=_as(other)
    )
    assert assert_problem(r, 403, "liveness_token_invalid")["reason"] == "unknown"
    with client.app.state.facegate.sessions.begin() as s:
        s.execute(update(LivenessToken).values(expires_at=utcnow() - timedelta(seconds=1)))
    r = client.post(
        "/verify", files=files, data={"person_id": "a", "liveness_token": token}, headers=_as(door)
    )
    assert assert_problem(r, 403, "liveness_token_invalid")["reason"] == "expired"
    r = client.post(
        "/verify", files=files, data={"person_id": "a", "liveness_token": "lt_short"}, headers=_as(door)
    )
    assert_problem(r, 422, "invalid_request")


@pytest.mark.lfw
def test_the_token_embedding_is_sealed_like_a_template(make_client, lfw_people):
    from service.gallery.cipher import new_key

    client = make_client(encryption_keys=new_key("k1"))
    photo = sorted(lfw_people[0].glob("*.jpg"))[0]
    token = _token_for(client, photo, None)
    with client.app.state.facegate.engine.connect() as conn:
        blob = conn.execute(text("SELECT embedding FROM liveness_tokens")).scalar_one()
    assert bytes(blob).startswith(b"\x7fFGE")  # an envelope, not a plain vector
    assert token not in repr(blob)


@pytest.mark.lfw
def test_a_setting_requires_a_token_for_keys_of_a_scope(make_client, lfw_people):
    client = make_client(liveness_required_scopes="verify")
    photos = sorted(lfw_people[0].glob("*.jpg"))
    assert (
        post_photo(
            client, "/enroll", photos[0], name="A", person_id="a", face_selection="largest"
        ).status_code
        == 201
    )
    door, door_id = _key(client, "verify")
    files = {"image": ("p.jpg", photos[1].read_bytes(), "image/jpeg")}
    for route, fields in (("/verify", {"person_id": "a"}), ("/identify", {})):
        body = assert_problem(
            client.post(route, files=files, data=fields, headers=_as(door)), 403, "liveness_required"
        )
        assert body["scopes"] == ["verify"]
    assert (
        client.post("/verify", files=files, data={"person_id": "a"}).status_code == 200
    )  # admin: not listed
    token = _token_for(client, photos[1], door_id)
    r = client.post(
        "/verify", files=files, data={"person_id": "a", "liveness_token": token}, headers=_as(door)
    )
    assert r.status_code == 200 and r.json()["match"] is True, r.text


def test_one_person_throughout_by_a_chain_of_matches():
    from service.liveness.check import unlinked

    rng = np.random.default_rng(0)
    a, b = np.linalg.qr(rng.normal(size=(128, 2)))[0].T  # orthonormal
    # a head turning away: each frame close to the next, the last far from the frontal first
    turning = [a * np.cos(t) + b * np.sin(t) for t in np.linspace(0, 1.2, 7)]
    assert unlinked(turning, 0, 0.9) == []
    assert unlinked(turning, 0, 0.99) == [2, 3, 4, 5, 6, 7]
    other = rng.normal(size=128)
    swapped = [*turning[:4], other / np.linalg.norm(other), *turning[4:]]
    assert unlinked(swapped, 0, 0.9) == [5]


def test_the_setting_names_known_scopes():
    from pydantic import ValidationError

    from service.settings import Settings

    with pytest.raises(ValidationError, match="unknown scopes"):
        Settings(liveness_required_scopes="verify,door")
    assert Settings(liveness_required_scopes="verify, enroll").liveness_required_scopes
