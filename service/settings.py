"""All run-time settings, read from the environment with the ``FACEGATE_`` prefix."""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path

from limits import parse_many
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.auth import MIN_CHOSEN_KEY_LEN, SCOPES
from service.gallery.cipher import parse_keys

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODELS_DIR = REPO_ROOT / "models"


DEFAULT_MODEL = "fused-celeba"  # the shipped model a deployment starts on (models/<DEFAULT_MODEL>)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="FACEGATE_", env_file=".env", extra="ignore", hide_input_in_errors=True
    )

    # storage
    database_url: str = Field(
        "", description="SQLAlchemy URL of the gallery (default: the SQLite file facegate.db in data_dir)"
    )
    data_dir: Path = Field(Path("./var"), description="Folder for the SQLite file and other local state")
    encryption_keys: SecretStr | None = Field(
        None,
        description="Keys sealing reference crops and embeddings at rest (AES-256-GCM): id:base64key "
        "entries, comma-separated, newest first; new rows use the first (unset: stored in clear)",
    )

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

    # retraining (training/retrain/adapter_job.py, service/selftrain.py; README "Retraining")
    selftrain_dir: Path | None = Field(
        None, description="Keep probe crops accepted at a very high score here for retraining (unset: off)"
    )
    selftrain_min_score: float = Field(
        0.999, gt=0, le=1, description="Smallest /verify or /identify match score whose probe crop is kept"
    )
    selftrain_retention_days: float = Field(
        30.0, gt=0, description="Days a kept probe crop is kept before it is deleted"
    )

    @field_validator("selftrain_dir", mode="before")
    @classmethod
    def _selftrain_off_when_empty(cls, value: object) -> object:
        return None if value == "" else value  # compose passes an unset variable as ""

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

    # rate limits (service/api/rate_limit.py; README "Rate limits" says why these numbers):
    # each a list "N/second;M/minute;...", empty for no limit
    rate_limit_verify: str = Field(
        "10/second;200/minute;3000/hour;20000/day",
        description="Requests per non-admin key except POST /enroll (/verify and /identify counted together)",
    )
    rate_limit_enroll: str = Field(
        "5/second;120/minute;2000/hour", description="POST /enroll requests per non-admin key"
    )
    rate_limit_admin: str = Field(
        "", description="Requests per admin key (default none: the key can export every template anyway)"
    )
    rate_limit_address: str = Field(
        "30/second;600/minute", description="Requests without a valid key, per client address"
    )
    rate_limit_storage: str = Field(
        "memory://",
        description="Where requests are counted: memory:// (this process) or redis://host:port/db "
        "(rediss://, redis+unix://), shared by every replica",
    )
    trusted_proxies: str = Field(
        "",
        description="Comma-separated addresses or networks of reverse proxies whose X-Forwarded-For "
        "names the client (empty: the header is ignored)",
    )

    @field_validator("rate_limit_verify", "rate_limit_enroll", "rate_limit_admin", "rate_limit_address")
    @classmethod
    def _rate_limit_parses(cls, value: str) -> str:
        if value.strip():
            parse_many(value)  # ValueError names the text it could not parse
        return value

    @field_validator("rate_limit_storage")
    @classmethod
    def _rate_limit_storage_scheme(cls, value: str) -> str:
        scheme, sep, _ = value.partition("://")
        if not sep or scheme not in ("memory", "redis", "rediss", "redis+unix"):
            raise ValueError(f"must be memory:// or a redis://, rediss://, redis+unix:// URL, got {value!r}")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _trusted_proxies_parse(cls, value: str) -> str:
        for entry in filter(None, (p.strip() for p in value.split(","))):
            ipaddress.ip_network(entry, strict=False)  # ValueError names the entry
        return value

    # replicas
    sync_interval: float = Field(
        0.5, ge=0, description="Seconds between reads of the change log written by other replicas (0: off)"
    )
    consistency_interval: float = Field(
        300.0,
        ge=0,
        description="Seconds between full comparisons of the index with the database in the background "
        "(0: only on demand, GET /admin/consistency)",
    )
    index_snapshots: bool = Field(
        True,
        description="Start from a saved index snapshot and replay the change log since, instead of "
        "rebuilding the index from the database (service/snapshot.py)",
    )
    index_snapshot_dir: Path | None = Field(
        None,
        description="Folder of the index snapshots (default: data_dir/index-snapshots; replicas may share one)",
    )
    index_snapshot_interval: float = Field(
        300.0,
        ge=0,
        description="Seconds between index snapshots while the change log moves (0: only at shutdown)",
    )
    exact_index_max: int = Field(
        200_000,
        ge=0,
        description="Embeddings a collection's index searches exactly; above it an HNSW graph with exact "
        "re-ranking (service/approx_index.py; 0: always exact)",
    )

    # the access log (service/audit_retention.py)
    audit_retention_days: int = Field(
        0, ge=0, le=36500, description="Days audit rows are kept before the automatic purge (0: forever)"
    )
    audit_purge_interval: float = Field(
        3600.0, gt=0, description="Seconds between automatic purges of audit rows past the retention"
    )

    # liveness (service/liveness/, README "Liveness (experimental)")
    liveness_challenge_ttl: float = Field(
        30.0, gt=0, le=600, description="Seconds a liveness challenge may be answered after it is issued"
    )
    liveness_token_ttl: float = Field(
        60.0, gt=0, le=3600, description="Seconds a liveness token may be redeemed by /verify or /identify"
    )
    liveness_required_scopes: str = Field(
        "",
        description="Comma-separated key scopes whose keys must send a liveness_token to /verify and "
        "/identify (empty: none; an admin key only when admin is listed)",
    )

    @field_validator("liveness_required_scopes")
    @classmethod
    def _liveness_scopes_known(cls, value: str) -> str:
        unknown = {s.strip() for s in value.split(",") if s.strip()} - SCOPES
        if unknown:
            raise ValueError(f"unknown scopes {sorted(unknown)}; valid: {', '.join(sorted(SCOPES))}")
        return value

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

    @field_validator("encryption_keys")
    @classmethod
    def _encryption_keys_parse(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_keys(value.get_secret_value())  # a malformed key stops the start, naming the entry
        return value

    @model_validator(mode="after")
    def _sqlite_in_data_dir(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'facegate.db'}"
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()
