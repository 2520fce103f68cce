"""The aligned-crop cache: every image in the manifest, failures listed, crops readable by memmap."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import data_dir
from tests.training.synthetic_faces import make_cache, make_identity_folder
from training.backbones import ARCFACE_TEMPLATE_112, arcface_template
from training.data.augment import Augment, to_float_nchw
from training.data.dataset import FaceDataset, prepare_folder
from training.data.prepare import PrepareOptions
from training.data.sources import list_images

REPO = Path(__file__).resolve().parents[3]
DATA = data_dir()
LFW = DATA / "lfw" / "images"
MTCNN = REPO / "models" / "mtcnn"


def test_assumed_alignment_cache_lists_every_image(tmp_path: Path) -> None:
    images = make_identity_folder(tmp_path / "images", n_ids=3, per_id=2)
    (images / "id01" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    opts = PrepareOptions(size=(32, 32), template=arcface_template((32, 32)), assume_aligned="always")
    cache = prepare_folder(images, tmp_path / "cache", opts)
    assert len(cache.manifest) == 7
    assert cache.crops.shape == (6, 32, 32, 3) and cache.crops.dtype == np.uint8
    assert isinstance(cache.crops, np.memmap)
    failures = cache.failures()
    assert [(f["status"], Path(f["source"]).name) for f in failures] == [("error", "broken.jpg")]
    assert {r["method"] for r in cache.manifest if r["status"] == "ok"} == {"assumed_aligned"}
    assert cache.identities == ["id00", "id01", "id02"]
    assert cache.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert cache.meta["counts"] == {"ok": 6, "no_face": 0, "error": 1}


def test_labels_csv_source(tmp_path: Path) -> None:
    images = make_identity_folder(tmp_path / "images", n_ids=2, per_id=2)
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("path,identity\nid00/0.png,alice\nid00/1.png,alice\nid01/0.png,bob\n")
    records = list_images(images, csv_path)
    assert [(r.path.name, r.identity) for r in records] == [
        ("0.png", "alice"),
        ("1.png", "alice"),
        ("0.png", "bob"),
    ]


def test_dataset_batches_from_the_memmap(tmp_path: Path) -> None:
    cache = make_cache(tmp_path, n_ids=4, per_id=3)
    ds = FaceDataset(cache, np.array([5, 0, 7]))
    crops, labels = ds.__getitems__([2, 0, 1])
    assert crops.dtype == torch.uint8 and crops.shape == (3, 32, 32, 3)
    assert torch.equal(crops[0], torch.from_numpy(np.array(cache.crops[7])))
    assert labels.tolist() == [cache.labels[7], cache.labels[5], cache.labels[0]]
    single, label = ds[1]
    assert torch.equal(single, crops[2]) and label == labels[2]


def test_augment_is_seeded_and_keeps_range(tmp_path: Path) -> None:
    cache = make_cache(tmp_path, n_ids=2, per_id=2)
    x = to_float_nchw(torch.from_numpy(np.array(cache.crops)))
    aug = Augment()
    a = aug(x.clone(), torch.Generator().manual_seed(1))
    b = aug(x.clone(), torch.Generator().manual_seed(1))
    c = aug(x.clone(), torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 255
    flip_only = Augment(flip=1.0, brightness=0, contrast=0, saturation=0, shift=0, scale=0)
    assert torch.equal(flip_only(x, torch.Generator()), x.flip(-1))


@pytest.mark.lfw
@pytest.mark.skipif(not LFW.is_dir(), reason=f"LFW not found at {LFW} (set FACEGATE_DATA)")
@pytest.mark.skipif(not (MTCNN / "onet.onnx").is_file(), reason="MTCNN models not in models/mtcnn")
def test_detected_faces_and_no_face_images_are_listed(tmp_path: Path) -> None:
    src = tmp_path / "images"
    for name in ("Aaron_Peirsol", "Abdullah_Gul"):
        (src / name).mkdir(parents=True)
        for p in sorted((LFW / name).glob("*.jpg"))[:2]:
            (src / name / p.name).write_bytes(p.read_bytes())
    blank = src / "Nobody"
    blank.mkdir()
    Image.fromarray(np.full((120, 100, 3), 128, np.uint8)).save(blank / "grey.png")
    opts = PrepareOptions(models_dir=REPO / "models")
    cache = prepare_folder(src, tmp_path / "cache", opts)
    with (tmp_path / "cache" / "manifest.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 5
    status = {Path(r["source"]).name: (r["status"], r["method"]) for r in rows}
    assert status["grey.png"] == ("no_face", "")
    assert sum(1 for s in status.values() if s == ("ok", "detected")) == 4
    assert cache.crops.shape == (4, 112, 112, 3)
    assert "Nobody" not in cache.identities  # no usable image, but listed in the manifest
    # fallback mode maps the face-less image onto the template instead, and says so
    fb = prepare_folder(
        src, tmp_path / "cache2", PrepareOptions(models_dir=REPO / "models", assume_aligned="fallback")
    )
    methods = {Path(r["source"]).name: r["method"] for r in fb.manifest}
    assert methods["grey.png"] == "assumed_aligned" and fb.crops.shape[0] == 5
    assert np.allclose(fb.template, ARCFACE_TEMPLATE_112)
