"""ORM tables. The database is the source of truth; the FAISS index is rebuilt from it."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Every constraint gets a predictable name, so later migrations can alter it (SQLite batch mode too).
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(t: datetime) -> datetime:
    """SQLite hands back naive datetimes; every stored time is UTC."""
    return t if t.tzinfo is not None else t.replace(tzinfo=timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


PERSON_STATUSES = ("active", "suspended")


class Person(Base):
    """An enrolled person. A ``suspended`` person, or one past ``expires_at``, is kept but never
    matched (``service.gallery.status``)."""

    __tablename__ = "people"
    __table_args__ = (
        Index("ix_people_created_at", "created_at", "person_id"),
        CheckConstraint("status IN ('active', 'suspended')", name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    person_id: Mapped[str] = mapped_column(String(128), unique=True, nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="active", server_default="active")
    suspended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    crop: Mapped[ReferenceCrop | None] = relationship(
        back_populates="person", cascade="all, delete-orphan", passive_deletes=True, uselist=False
    )
    embeddings: Mapped[list[Embedding]] = relationship(
        back_populates="person", cascade="all, delete-orphan", passive_deletes=True
    )
    collections: Mapped[list[Collection]] = relationship(
        secondary="collection_members", order_by="Collection.name", viewonly=True
    )


CROP_KINDS = ("chip", "canvas")


class ReferenceCrop(Base):
    """The aligned reference image, kept so the gallery can be re-embedded by a new model.

    ``kind`` says what it is: ``canvas`` (stored since revision 0002) is the large aligned canvas
    in the model-independent frame of ``service.pipeline.canvas``, from which any model's crop is
    derived; ``chip`` (rows stored before) is the enrolling model's own aligned crop, realigned
    for another template as far as it reaches (``service.crop_embed``).
    """

    __tablename__ = "reference_crops"
    __table_args__ = (CheckConstraint("kind IN ('chip', 'canvas')", name="kind"),)

    person_pk: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"), primary_key=True)
    image_png: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    width: Mapped[int] = mapped_column(Integer, nullable=False)
    height: Mapped[int] = mapped_column(Integer, nullable=False)
    meta: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)
    photo_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False, default="chip", server_default="chip")

    person: Mapped[Person] = relationship(back_populates="crop")


class Embedding(Base):
    """One embedding of a person's reference crop by one model version; ``id`` is the FAISS id."""

    __tablename__ = "embeddings"
    __table_args__ = (
        Index("ix_embeddings_model_version", "model_version"),
        UniqueConstraint("person_pk", "model_version", name="uq_embeddings_person_model"),
        {"sqlite_autoincrement": True},  # ids are FAISS ids: never reuse one
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    person_pk: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"), nullable=False)
    model_version: Mapped[str] = mapped_column(String(100), nullable=False)
    vector: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)

    person: Mapped[Person] = relationship(back_populates="embeddings")


class Collection(Base):
    """A named set of people searched together (a site, a door: ``service.collection_index``).
    A person without a membership row is in the ``default`` collection."""

    __tablename__ = "collections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)


class CollectionMember(Base):
    __tablename__ = "collection_members"
    __table_args__ = (Index("ix_collection_members_person_pk", "person_pk"),)

    collection_pk: Mapped[int] = mapped_column(
        ForeignKey("collections.id", ondelete="CASCADE"), primary_key=True
    )
    person_pk: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"), primary_key=True)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    prefix: Mapped[str] = mapped_column(String(16), nullable=False, index=True)
    key_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    scopes: Mapped[str] = mapped_column(String(100), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # a key bound to a collection searches only it (service.collection_index); None: any
    collection: Mapped[str | None] = mapped_column(String(64), nullable=True)


class AuditEvent(Base):
    """Who did what and when. ``person_id`` is plain text so the row outlives a deletion; it holds
    no photo, crop or embedding."""

    __tablename__ = "audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False, index=True)
    key_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    key_name: Mapped[str] = mapped_column(String(100), nullable=False)
    action: Mapped[str] = mapped_column(String(32), nullable=False)
    person_id: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)
    result: Mapped[str] = mapped_column(String(32), nullable=False)
    score: Mapped[float | None] = mapped_column(Double, nullable=True)
    model_version: Mapped[str | None] = mapped_column(String(100), nullable=True)
    detail: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)


class ChangeLog(Base):
    """Gallery changes in commit order, for replicas that keep their own index in step."""

    __tablename__ = "change_log"
    __table_args__ = (
        CheckConstraint("op IN ('upsert', 'delete')", name="op"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    op: Mapped[str] = mapped_column(String(16), nullable=False)
    person_id: Mapped[str] = mapped_column(String(128), nullable=False)


class LivenessChallenge(Base):
    """A liveness challenge handed out (``service.liveness.challenges``): its random pose steps,
    the key that asked, its expiry, and when a check used it (each is used at most once)."""

    __tablename__ = "liveness_challenges"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    steps: Mapped[list] = mapped_column(JSON, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, index=True)
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class LivenessToken(Base):
    """The single-use token a passed liveness check issues (``service.liveness.tokens``), stored by
    the SHA-256 of its secret; ``embedding`` is the live face's, sealed like a template."""

    __tablename__ = "liveness_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    challenge_id: Mapped[str] = mapped_column(String(64), nullable=False)
    key_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    model_version: Mapped[str] = mapped_column(String(100), nullable=False)
    embedding: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    score: Mapped[float] = mapped_column(Double, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, index=True)
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
