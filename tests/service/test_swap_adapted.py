"""A version the retraining job publishes (the default model's graph + an adapter, one ONNX file) goes
through the lifecycle swap: a watching service adopts it after re-embedding the gallery, answers
with it, and rolls back with one call."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from service.model_card import load_card
from service.model_registry import derived_card, publish
from service.settings import DEFAULT_MODEL
from tests.service.api_helpers import post_photo
from tests.service.lifecycle_helpers import private_models, start_client
from training.export.adapter_export import write_adapted_model
from training.science.adapter import ResidualAdapter

pytestmark = pytest.mark.lfw


def test_a_watching_service_adopts_an_adapted_version_and_rolls_back(database_url: str, tmp_path: Path,
                                                                      lfw_people) -> None:  # fmt: skip
    models = private_models(tmp_path)
    base = load_card(models / DEFAULT_MODEL)
    client = start_client(database_url, tmp_path, models, watch_models=True, watch_interval=0.2)
    try:
        people = lfw_people[:3]
        for i, person in enumerate(people):
            r = post_photo(client, "/enroll", sorted(person.glob("*.jpg"))[0], name=person.name, person_id=f"p{i}",
                           face_selection="largest")  # fmt: skip
            assert r.status_code == 201, r.text
        lifecycle = client.app.state.facegate.lifecycle
        assert lifecycle.watch_once() is None
        torch.manual_seed(0)
        adapter = ResidualAdapter(base.embedding_dim, 32)
        with torch.no_grad():
            adapter.fc2.weight.normal_(0, 0.05)
        version = f"{base.version}-ad.test"
        card = derived_card(base, version, provenance="test adapter")
        publish(models, version, lambda folder: write_adapted_model(models / DEFAULT_MODEL, base, adapter, folder,
                                                                    card) and None)  # fmt: skip
        job = lifecycle.watch_once() or lifecycle.job()
        assert job is not None and job.version == version
        job.done.wait(180)
        assert client.get("/model").json()["version"] == version
        same = post_photo(client, "/verify", sorted(people[0].glob("*.jpg"))[0], person_id="p0").json()
        assert (
            same["model_version"] == version
            and same["match"]
            # the swap re-embeds the reference from its stored canvas, the probe comes from the photo:
            # the default's int8 members are that far apart (bench/crop_migration.py: 0.998 mean)
            and np.isclose(same["similarity"], 1.0, atol=5e-3)
        )
        back = client.post(f"/admin/models/{base.version}/activate")
        assert back.status_code in (200, 202), back.text
        lifecycle.job() and lifecycle.job().done.wait(180)
        assert client.get("/model").json()["version"] == base.version
    finally:
        client.__exit__(None, None, None)
