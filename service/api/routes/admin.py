"""Admin: model versions (list, activate / roll back) and calibration on the organisation's photos."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Path, Query, Response, UploadFile
from starlette.concurrency import run_in_threadpool

from service.api.deps import AdminCaller, StateDep
from service.api.problems import problem_responses
from service.api.strict_body import refuse_repeated_form_fields
from service.org_calibration import read_zip
from service.schemas import CalibrationReport, ConsistencyOut, ModelVersions, SwapOut

router = APIRouter(prefix="/admin", tags=["admin"])

Version = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$", description="a model version")]


@router.get("/models", response_model=ModelVersions, responses=problem_responses(401, 403, 503))
def list_models(state: StateDep, caller: AdminCaller) -> ModelVersions:
    """Published model versions in the models folder, the active one, and the last swap."""
    return ModelVersions.model_validate(state.lifecycle.versions())


@router.get("/consistency", response_model=ConsistencyOut, responses=problem_responses(401, 403, 422, 503))
async def consistency(
    state: StateDep,
    caller: AdminCaller,
    fresh: Annotated[
        bool, Query(description="compare now rather than answer the last background result")
    ] = False,
) -> ConsistencyOut:
    """The full comparison of the index with the database (every stored embedding id; O(N), run
    every FACEGATE_CONSISTENCY_INTERVAL seconds in the background). Without a result yet, or
    with ``fresh=true``, it runs now."""
    last = state.consistency.last
    if fresh or last is None or last.report.model_version != state.recognizer.version:
        last = await run_in_threadpool(state.consistency.check)
    r = last.report
    return ConsistencyOut(
        consistent=r.consistent,
        model_version=r.model_version,
        database=r.database,
        indexed=r.indexed,
        stale=r.stale,
        missing=r.missing_total,
        extra=r.extra_total,
        misattributed=r.misattributed_total,
        sample_missing=r.missing,
        sample_extra=r.extra,
        sample_misattributed=r.misattributed,
        checked_at=datetime.fromtimestamp(last.checked_at, timezone.utc),
        seconds=last.seconds,
    )


@router.post(
    "/models/{version}/activate",
    status_code=202,
    response_model=SwapOut,
    responses={
        200: {"model": SwapOut, "description": "with wait=true: the swap has finished or failed"},
        **problem_responses(
            401,
            403,
            404,
            409,
            413,
            422,
            503,
            s404="no such version (model_not_found)",
            s409="another swap is running",
        ),
    },
)
async def activate_model(
    version: Version,
    state: StateDep,
    caller: AdminCaller,
    response: Response,
    wait: Annotated[bool, Query(description="answer when the swap has finished")] = False,
    timeout: Annotated[float, Query(gt=0, le=3600, description="longest wait, in seconds")] = 600.0,
) -> SwapOut:
    """Adopt ``version`` (also to roll back): the gallery is re-embedded in the background while
    the current model keeps answering, then the service switches at once. 202 with the swap's
    state; with ``wait=true``, 200 once it is done (or failed)."""
    job = await run_in_threadpool(state.lifecycle.activate, version, caller)
    if wait:
        await run_in_threadpool(job.done.wait, timeout)
    response.status_code = 200 if job.done.is_set() else 202
    return SwapOut.model_validate(job.to_dict())


@router.post(
    "/calibrate",
    status_code=201,
    response_model=CalibrationReport,
    responses=problem_responses(
        400,
        401,
        403,
        408,
        409,
        413,
        422,
        503,
        s409="activate=true while another swap is running",
        s413="the body is over the upload limit (image_too_large), or the archive unpacks past "
        "FACEGATE_CALIBRATE_MAX_BYTES (archive_too_large) or holds too many files (archive_too_many_files)",
        s422="not a zip of labelled photos, or too few usable faces or pairs to calibrate on",
    ),
)
async def calibrate(
    state: StateDep,
    caller: AdminCaller,
    _: Annotated[None, Depends(refuse_repeated_form_fields)],
    archive: Annotated[UploadFile, File(description="zip of <identity>/<photo> (+ optional pairs.csv)")],
    target_far: Annotated[float | None, Form(gt=0, lt=1, description="default: FACEGATE_TARGET_FAR")] = None,
    activate: Annotated[bool, Form(description="activate the new version when published")] = False,
) -> CalibrationReport:
    """Calibrate the model in use on the organisation's labelled photos and publish the result as a
    new model version (same ONNX file, new card). Reports FAR and FRR at the new threshold. The
    archive is unpacked off the event loop, up to FACEGATE_CALIBRATE_MAX_BYTES in all."""
    labelled = await run_in_threadpool(read_zip, archive.file, state.settings.calibrate_max_bytes)
    report = await run_in_threadpool(
        state.lifecycle.calibrate, labelled, target_far or state.settings.target_far, caller, activate
    )
    return CalibrationReport.model_validate(report)
