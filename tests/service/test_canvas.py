"""The stored canvas covers what any template needs (issue 11, C6): a model's crop cut from the
canvas equals the crop cut from the photo, where a crop realigned from the old dlib chip is
partly black."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from service.crop_embed import CropEmbedder, StoredCrop, canvas_alignment_meta
from service.model_card import Alignment
from service.pipeline.align import align_face, similarity_transform
from service.pipeline.canvas import (
    ARCFACE_112,
    CANONICAL_TEMPLATE,
    CANVAS_SIZE,
    crop_from_canvas,
    cut_canvas,
)

DLIB_150 = Alignment(
    size=(150, 150),
    template=[
        (47.8507, 46.0281),
        (102.3157, 45.9944),
        (74.6861, 77.8298),
        (50.8619, 105.4135),
        (98.8135, 105.4143),
    ],
)
ARCFACE = Alignment(size=(112, 112), template=[tuple(p) for p in ARCFACE_112.tolist()])


def _smooth_photo(seed: int) -> np.ndarray:
    """A textured photo, smooth enough that resampling twice stays close to resampling once."""
    rng = np.random.default_rng(seed)
    noise = (rng.random((40, 40, 3)) * 255).astype(np.uint8)
    return np.asarray(Image.fromarray(noise).resize((400, 400), Image.Resampling.BICUBIC), dtype=np.uint8)


LANDMARKS = np.array([[170, 180], [232, 176], [203, 215], [176, 250], [228, 247]], float)


def _corners_in(src: Alignment | np.ndarray, size: tuple[int, int]) -> np.ndarray:
    template = np.asarray(src.template if isinstance(src, Alignment) else src, float)
    m = similarity_transform(template, CANONICAL_TEMPLATE)
    w, h = size
    corners = np.array([[0, 0], [w, 0], [0, h], [w, h]], float)
    return corners @ m[:, :2].T + m[:, 2]


@pytest.mark.parametrize("alignment", [ARCFACE, DLIB_150], ids=["arcface112", "dlib150"])
def test_the_canvas_frame_holds_each_template_with_margin_and_without_upsampling(alignment) -> None:
    corners = _corners_in(alignment, alignment.size)
    assert corners.min() >= 32 and corners.max() <= min(CANVAS_SIZE) - 32, corners
    template = np.asarray(alignment.template)
    eye_distance = np.linalg.norm(template[1] - template[0])
    canvas_eyes = np.linalg.norm(CANONICAL_TEMPLATE[1] - CANONICAL_TEMPLATE[0])
    assert canvas_eyes >= eye_distance


@pytest.mark.parametrize("alignment", [ARCFACE, DLIB_150], ids=["arcface112", "dlib150"])
def test_a_crop_cut_from_the_canvas_is_the_crop_cut_from_the_photo(alignment) -> None:
    photo = _smooth_photo(0)
    canvas = cut_canvas(photo, LANDMARKS)
    assert canvas.image.shape == (CANVAS_SIZE[1], CANVAS_SIZE[0], 3)
    direct = align_face(photo, LANDMARKS, np.asarray(alignment.template), alignment.size).astype(float)
    derived = crop_from_canvas(canvas.image, {"canvas": canvas.meta()}, alignment).astype(float)
    assert derived.shape == direct.shape
    assert np.abs(derived - direct).mean() < 3.0  # the whole crop, borders included
    assert (derived.sum(axis=2) == 0).mean() == 0.0  # nothing black: the canvas covered it all


def test_the_old_dlib_chip_loses_part_of_the_arcface_crop_the_canvas_keeps() -> None:
    from service.crop_embed import realign

    photo = _smooth_photo(1)
    chip = align_face(photo, LANDMARKS, np.asarray(DLIB_150.template), DLIB_150.size)
    meta = {
        "face": {"landmarks": LANDMARKS.tolist()},
        "alignment": {"size": list(DLIB_150.size), "template": [list(p) for p in DLIB_150.template]},
    }
    from_chip = realign(chip, meta, ARCFACE)
    black = (from_chip.sum(axis=2) == 0).mean()
    assert black > 0.05  # the forehead band above the chip's top edge, and the sides
    canvas = cut_canvas(photo, LANDMARKS)
    assert (crop_from_canvas(canvas.image, {"canvas": canvas.meta()}, ARCFACE).sum(axis=2) == 0).mean() == 0.0


def test_the_canvas_meta_frame_alone_gives_the_same_crop() -> None:
    """Code that only knows chips realigns a canvas from its ``alignment`` meta (the canvas
    frame) and the photo landmarks: the same crop as from the canvas's own landmarks."""
    from service.crop_embed import realign

    photo = _smooth_photo(2)
    canvas = cut_canvas(photo, LANDMARKS)
    as_chip = realign(
        canvas.image,
        {"face": {"landmarks": LANDMARKS.tolist()}, "alignment": canvas_alignment_meta()},
        ARCFACE,
    )
    as_canvas = crop_from_canvas(canvas.image, {"canvas": canvas.meta()}, ARCFACE)
    assert np.abs(as_chip.astype(float) - as_canvas.astype(float)).max() <= 1.0


def test_the_crop_embedder_cuts_canvases_and_realigns_chips() -> None:
    photo = _smooth_photo(3)
    canvas = cut_canvas(photo, LANDMARKS)

    class _Card:
        alignment = ARCFACE
        embedding_dim = 3

    class _Embedder:
        card = _Card()

        def embed(self, batch: np.ndarray) -> np.ndarray:
            return batch.reshape(len(batch), -1, 3).mean(1)

    import io

    buf = io.BytesIO()
    Image.fromarray(canvas.image).save(buf, "PNG")
    embedder = CropEmbedder(_Embedder())  # type: ignore[arg-type]
    stored = StoredCrop(buf.getvalue(), {"canvas": canvas.meta()}, "canvas")
    direct = align_face(photo, LANDMARKS, ARCFACE_112, (112, 112))
    assert np.abs(embedder.prepare(stored).astype(float) - direct.astype(float)).mean() < 3.0


@pytest.mark.lfw
def test_a_swap_to_an_arcface_template_model_cuts_canvases_and_realigns_old_chips(
    database_url, tmp_path, lfw_people
) -> None:
    """Enrolment stores the canvas (export says so); a swap to a model on the 112x112 ArcFace
    template (the shipped scratch MobileFaceNet) embeds it as that model embeds the photo; a row
    stored before (the dlib chip) still re-embeds; delete leaves nothing."""
    from sqlalchemy import text

    from service.model_card import load_card
    from service.pipeline.decode import decode_image
    from tests.service.api_helpers import post_photo
    from tests.service.lifecycle_helpers import REPO, private_models, start_client

    models = private_models(tmp_path, "dlib")
    (models / "scratch").symlink_to(
        REPO / "models" / "baselines" / "scratch-mobilefacenet", target_is_directory=True
    )
    target = load_card(models / "scratch").version
    client = start_client(database_url, tmp_path, models, model="dlib")  # 150x150 chips, not ArcFace
    try:
        photo, other = sorted(lfw_people[0].glob("*.jpg"))[0], sorted(lfw_people[1].glob("*.jpg"))[0]
        r = post_photo(client, "/enroll", photo, name="New", person_id="new", face_selection="largest")
        assert r.status_code == 201, r.text
        crop = client.get("/people/new/export").json()["reference_crop"]
        assert crop["kind"] == "canvas" and (crop["width"], crop["height"]) == CANVAS_SIZE
        assert len(crop["meta"]["canvas"]["landmarks"]) == 5
        assert crop["meta"]["alignment"] == canvas_alignment_meta()

        # a row as stored before revision 0002: the enrolling (dlib) model's own chip
        rec = client.app.state.facegate.lifecycle.current
        rgb = decode_image(other.read_bytes(), 40_000_000)
        face = rec.pipeline.detector.detect(rgb)[0]
        chip = rec.pipeline.align(rgb, face)
        rec.gallery.enroll("old", "Old", _png(chip), {"face": face.to_dict()}, "a" * 64,
                           rec.pipeline.embedder.embed(chip[None])[0], crop_kind="chip")  # fmt: skip
        assert client.get("/people/old/export").json()["reference_crop"]["kind"] == "chip"

        r = client.post(f"/admin/models/{target}/activate", params={"wait": "true"})
        assert r.status_code == 200 and r.json()["state"] == "done", r.text
        fresh = post_photo(client, "/verify", photo, person_id="new").json()
        assert fresh["model_version"] == target and fresh["similarity"] >= 0.99, fresh
        legacy = post_photo(client, "/verify", other, person_id="old").json()
        assert legacy["model_version"] == target and legacy["similarity"] < fresh["similarity"], legacy
        assert set(client.get("/people/old").json()["model_versions"]) == {rec.version, target}

        assert client.delete("/people/new").status_code in (200, 204)
        assert client.get("/people/new/export").status_code == 404
        with client.app.state.facegate.engine.connect() as conn:
            left = conn.execute(text("SELECT count(*) FROM people p JOIN reference_crops c ON c.person_pk = p.id "
                                     "WHERE p.person_id = 'new'")).scalar()  # fmt: skip
            crops = conn.execute(text("SELECT count(*) FROM reference_crops")).scalar()
            embeddings = conn.execute(text("SELECT count(*) FROM embeddings")).scalar()
        assert left == 0 and crops == 1 and embeddings == 2  # only "old" is left, for both versions
    finally:
        client.__exit__(None, None, None)


def _png(rgb: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    return buf.getvalue()
