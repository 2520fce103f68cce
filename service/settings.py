"""All run-time settings, read from the environment with the ``FACEGATE_`` prefix."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.auth import MIN_CHOSEN_KEY_LEN

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODELS_DIR = REPO_ROOT / "models"


DEFAULT_MODEL = "sface"  # the shipped model a deployment starts on (models/<DEFAULT_MODEL>)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="FACEGATE_", env_file=".env", extra="ignore", hide_input_in_errors=True
    )

    # storage
    database_url: str = Field(
        "", description="SQLAlchemy URL of the gallery (default: the SQLite file facegate.db in data_dir)"
    )
    data_dir: Path = Field(Path("./var"), description="Folder for the SQLite file and other local state")

    # models
    models_dir: Path = Field(DEFAULT_MODELS_DIR, description="Folder holding mtcnn/ and the embedding models")
    model: str = Field(
        DEFAULT_MODEL,
        description="Embedding model folder inside models_dir to start on, unless models_dir/active.json "
        "names the version activated last",
    )
    execution_provider: str = Field("auto", description="onnxruntime provider: auto, cpu or cuda")
    watch_models: bool = Field(
        False, description="Adopt newly published model versions (and active.json changes) automatically"
    )
    watch_interval: float = Field(5.0, gt=0, description="Seconds between scans of models_dir when watching")
    intra_op_threads: int = Field(0, ge=0, description="onnxruntime threads per session (0: library default)")

    # image intake
    max_upload_bytes: int = Field(10 * 1024 * 1024, gt=0, description="Largest accepted upload body")
    max_image_pixels: int = Field(40_000_000, gt=0, description="Largest accepted image (width x height)")
    detect_max_side: int = Field(
        640, gt=0, description="Photos are downscaled to this longest side for detection"
    )
    min_face_size: int = Field(
        40, gt=0, description="Smallest face the detector looks for, in original pixels"
    )

    # enrolment quality: the limits of quality_filter=medium (service/pipeline/quality.py, README)
    min_eye_distance: float = Field(
        24.0, ge=0, description="Smallest inter-eye distance (px) to enrol at quality_filter=medium"
    )
    min_sharpness: float = Field(
        12.0,
        ge=0,
        description="Smallest variance of the Laplacian of the aligned crop at quality_filter=medium",
    )
    max_yaw: float = Field(
        0.99,
        ge=0,
        description="Largest yaw asymmetry from the landmarks (0 frontal, 1 profile) at quality_filter=medium",
    )
    min_detection_score: float = Field(
        0.95, ge=0, le=1, description="Smallest detector confidence to enrol at quality_filter=medium"
    )

    # decisions
    target_far: float = Field(
        1e-3, gt=0, lt=1, description="False-accept rate /verify's threshold is chosen for"
    )
    verify_threshold: float | None = Field(None, gt=0, lt=1, description="Explicit /verify score threshold")
    target_fpir: float = Field(
        0.01, gt=0, lt=1, description="False-positive identification rate for /identify"
    )
    ambiguity_margin: float = Field(
        0.05, ge=0, le=1, description="Score gap under which two matches are ambiguous"
    )
    top_k: int = Field(5, ge=1, le=100, description="Default number of /identify candidates")

    # resources: slow clients and the heavy work (service/api/slow_clients.py, admission.py)
    header_timeout: float = Field(
        10.0, gt=0, description="Seconds a client has to send a request's headers before 408 and close"
    )
    body_timeout: float = Field(
        10.0, gt=0, description="Seconds a request body may stall (nothing arrives) before 408 and close"
    )
    max_concurrent_work: int = Field(
        0, ge=0, description="Photo requests decoded and embedded at once (0: the CPUs available)"
    )
    max_queued_work: int = Field(
        32, ge=0, description="Photo requests waiting for a slot; more are answered 503 with Retry-After"
    )
    calibrate_max_bytes: int = Field(
        256 * 1024 * 1024, gt=0, description="Largest total uncompressed size of a /admin/calibrate zip"
    )

    # replicas
    sync_interval: float = Field(
        0.5, ge=0, description="Seconds between reads of the change log written by other replicas (0: off)"
    )

    # auth
    admin_key: str | None = Field(
        None,
        min_length=MIN_CHOSEN_KEY_LEN,
        description=f"Admin API key ensured at start (compose, scripts); at least {MIN_CHOSEN_KEY_LEN} characters",
    )

    # server
    host: str = Field("127.0.0.1", description="Address `facegate serve` binds")
    port: int = Field(8000, description="Port `facegate serve` binds")
    log_level: str = Field("info", description="Logging level")

    @model_validator(mode="after")
    def _sqlite_in_data_dir(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'facegate.db'}"
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()
