"""The published contract, checked by a tool: schemathesis over ``/openapi.json`` finds nothing.

Every phase (coverage, fuzzing, stateful, undeclared methods) and every check runs against the
in-process ASGI app with an admin key, on a fresh SQLite gallery and a private copy of the
models folder (``/admin/calibrate`` publishes into it), with the smallest shipped embedding
model. Examples are bounded and the seed fixed, so a run is reproducible and takes well under
a minute; a finding prints the request that reproduces it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")

from schemathesis.config import SchemathesisConfig  # noqa: E402
from schemathesis.engine import Status, events, from_schema  # noqa: E402

from service.api.main import create_app  # noqa: E402
from service.settings import Settings  # noqa: E402
from tests.service.conftest import ADMIN_KEY  # noqa: E402

SHIPPED = Settings().models_dir
SMALL_MODEL = SHIPPED / "baselines" / "scratch-mobilefacenet"
MAX_EXAMPLES = 20

# A schema can say "a JPEG, PNG or WebP file" but not "a photo with one usable face", nor "a zip
# of labelled photos": for these operations a schema-valid request may still be refused, with
# the documented problem (415 unsupported_image, 422 no_face / corrupt_image / invalid_request).
UNDESCRIBABLE_INPUT = {
    "/enroll": ["415", "422"],
    "/verify": ["415", "422"],
    "/identify": ["415", "422"],
    "/compare": ["415", "422"],
    "/admin/calibrate": ["422"],
    "/liveness/check": ["413", "415", "422"],  # frames: photos of one face each, at most 2 MiB
}

# Statuses a schema-valid request may get anyway (schemathesis' default for the check).
ACCEPTED = ["2xx", "401", "403", "404", "409"]


def _private_models(root: Path) -> Path:
    models = root / "models"
    shutil.copytree(SHIPPED / "mtcnn", models / "mtcnn")
    (models / "small").mkdir()
    for name in ("model.json", "model.onnx"):
        shutil.copy(SMALL_MODEL / name, models / "small" / name)
    return models


def _config() -> SchemathesisConfig:
    positive = [
        {
            "include-path": path,
            "checks": {"positive_data_acceptance": {"expected-statuses": ACCEPTED + extra}},
        }
        for path, extra in UNDESCRIBABLE_INPUT.items()
    ]
    # The stateful phase links POST /liveness/challenge's challenge_id into /liveness/check and so
    # can turn a negative case valid, then reports it accepted (schemathesis issue #2983).
    positive.append(
        {
            "include-path": "/liveness/check",
            "phases": {"stateful": {"checks": {"negative_data_rejection": {"enabled": False}}}},
        }
    )
    return SchemathesisConfig.from_dict(
        {
            "seed": 12,
            "workers": 1,
            "headers": {"Authorization": f"Bearer {ADMIN_KEY}"},
            "generation": {"max-examples": MAX_EXAMPLES, "database": "none"},
            "checks": {"enabled": True},
            "phases": {"stateful": {"max-steps": 20}},
            "operations": positive,
        }
    )


def _findings(stream) -> tuple[list[str], int]:
    found: list[str] = []
    cases = 0
    for event in stream:
        if isinstance(event, events.FatalError):
            raise event.exception
        if isinstance(event, events.NonFatalError):
            found.append(f"{event.label}: error {event.value!r}")
        if not isinstance(event, events.ScenarioFinished):
            continue
        recorder = event.recorder
        cases += len(recorder.cases)
        for case_id, checks in recorder.checks.items():
            for check in checks:
                if check.status != Status.FAILURE or check.failure_info is None:
                    continue
                case = recorder.cases[case_id].value
                interaction = recorder.interactions.get(case_id)
                answer = ""
                if interaction is not None and interaction.response is not None:
                    body = (interaction.response.content or b"")[:300]
                    answer = f" -> {interaction.response.status_code} {body!r}"
                failure = check.failure_info.failure
                found.append(
                    f"{recorder.label} [{event.phase}] {check.name}: {failure.title}: {failure.message}"
                    f"{answer}\n    {check.failure_info.code_sample or case.as_curl_command()}"
                )
    return found, cases


def test_schemathesis_finds_nothing(tmp_path: Path) -> None:
    if not (SMALL_MODEL / "model.json").is_file() or not (SHIPPED / "mtcnn" / "onet.onnx").is_file():
        pytest.skip("the shipped models (models/baselines/scratch-mobilefacenet, models/mtcnn) are missing")
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'gallery.db'}",
        data_dir=tmp_path / "var",
        admin_key=ADMIN_KEY,
        models_dir=_private_models(tmp_path),
        model="small",
    )
    app = create_app(settings)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=_config())

    try:
        found, cases = _findings(from_schema(schema).execute())
    finally:
        from schemathesis.python.asgi import shutdown_lifespans

        shutdown_lifespans()
    assert cases > 10 * len(schema.raw_schema["paths"]), f"only {cases} requests were generated"
    unique = sorted(set(found))
    assert not unique, f"{len(unique)} schemathesis findings:\n" + "\n".join(unique)
