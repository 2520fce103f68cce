"""Reference crops and embeddings encrypted at rest (AES-256-GCM, ``cryptography``).

Keys come from ``FACEGATE_ENCRYPTION_KEYS``: ``id:key`` pairs separated by commas, newest first,
each key 32 bytes in base64 (``facegate encryption new-key ID`` makes one). New rows are sealed
with the first key; a row opens with whichever listed key sealed it, so a key is rotated by
putting a new one first and re-encrypting the rows (``service.gallery.encryption.rotate``).

A sealed value is an envelope stored in the same blob column a plain value used (no schema
change)::

    MAGIC (4) | VERSION (1) | key id (8, ASCII, NUL-padded) | nonce (12) | ciphertext + tag (16)

A plain value cannot be mistaken for an envelope: a PNG starts with its own signature, and the
first float32 of a plain vector would read 3188.4, which no L2-normalised embedding holds. Plain
(legacy) values are returned as they are, so a database written before encryption stays readable
until ``rotate`` seals it. The associated data binds each envelope to its row (the person's
primary key, and the model version for an embedding): an envelope copied into another person's
row does not open.

The cipher travels with the sessions (``service.gallery.db.session_factory(engine, cipher)``
puts it in ``Session.info``); ``of(session)`` hands it to the code that reads and writes blobs.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import SecretStr
from sqlalchemy.orm import Session

MAGIC = b"\x7fFGE"
VERSION = 1
HEADER = MAGIC + bytes([VERSION])
KEY_ID_BYTES = 8
NONCE_BYTES = 12
TAG_BYTES = 16
PREFIX_BYTES = len(HEADER) + KEY_ID_BYTES  # what identifies the key: HEADER + key id
KEY_BYTES = 32
KEY_ID = re.compile(r"^[A-Za-z0-9_-]{1,8}$")
INFO_KEY = "facegate_cipher"
SETTING = "FACEGATE_ENCRYPTION_KEYS"


class TemplateKeyError(RuntimeError):
    """A stored template cannot be opened with the configured keys (missing or wrong key)."""


def parse_keys(value: str) -> list[tuple[str, bytes]]:
    """``id:base64key,...`` (newest first) as [(id, 32-byte key)]; an empty value is no keys.
    Errors name the entry by position and id, never the key material."""
    keys: list[tuple[str, bytes]] = []
    for n, entry in enumerate((e.strip() for e in value.split(",")), 1):
        if not entry:
            continue
        kid, sep, material = entry.partition(":")
        kid = kid.strip()
        if not sep or not KEY_ID.match(kid):
            raise ValueError(
                f"{SETTING} entry {n}: expected id:key with an id of 1 to {KEY_ID_BYTES} letters, "
                "digits, '-' or '_'"
            )
        try:
            key = base64.b64decode(material.strip().replace("-", "+").replace("_", "/"), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"{SETTING} key {kid!r} is not valid base64") from None
        if len(key) != KEY_BYTES:
            raise ValueError(f"{SETTING} key {kid!r} is {len(key)} bytes; AES-256 needs {KEY_BYTES}")
        if any(kid == k for k, _ in keys):
            raise ValueError(f"{SETTING} lists key id {kid!r} twice")
        keys.append((kid, key))
    return keys


def new_key(key_id: str) -> str:
    """A fresh random key as an ``id:key`` entry for ``FACEGATE_ENCRYPTION_KEYS``."""
    if not KEY_ID.match(key_id):
        raise ValueError(f"a key id is 1 to {KEY_ID_BYTES} letters, digits, '-' or '_'")
    return f"{key_id}:{base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).decode()}"


def prefix(key_id: str) -> bytes:
    """The first bytes of every envelope sealed with ``key_id``."""
    return HEADER + key_id.encode().ljust(KEY_ID_BYTES, b"\0")


def key_id_of(blob: bytes) -> str | None:
    """The key id an envelope was sealed with; None for a plain value."""
    if not blob.startswith(HEADER):
        return None
    return bytes(blob[len(HEADER) : PREFIX_BYTES]).rstrip(b"\0").decode("ascii", "replace")


def crop_context(person_pk: int) -> bytes:
    return b"reference_crops.image_png:%d" % person_pk


def vector_context(person_pk: int, model_version: str) -> bytes:
    return b"embeddings.vector:%d:" % person_pk + model_version.encode()


class TemplateCipher:
    """Seals and opens stored templates; with no keys it writes plain values (encryption off)."""

    def __init__(self, keys: Sequence[tuple[str, bytes]] = ()) -> None:
        self._keys = {kid: AESGCM(key) for kid, key in keys}
        self.key_ids: tuple[str, ...] = tuple(kid for kid, _ in keys)

    @classmethod
    def from_setting(cls, value: SecretStr | str | None) -> TemplateCipher:
        """The cipher of ``Settings.encryption_keys``."""
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        return cls(parse_keys(value or ""))

    @property
    def enabled(self) -> bool:
        return bool(self.key_ids)

    @property
    def write_key(self) -> str | None:
        """The id new values are sealed with (the first key), None when encryption is off."""
        return self.key_ids[0] if self.key_ids else None

    def seal(self, data: bytes, context: bytes) -> bytes:
        if not self.key_ids:
            return bytes(data)
        nonce = os.urandom(NONCE_BYTES)
        kid = self.key_ids[0]
        return prefix(kid) + nonce + self._keys[kid].encrypt(nonce, bytes(data), context)

    def open(self, blob: bytes | memoryview, context: bytes) -> bytes:
        """The plain value of an envelope (any listed key), or a plain value as it is."""
        blob = bytes(blob)
        kid = key_id_of(blob)
        if kid is None:
            return blob
        aead = self._keys.get(kid)
        if aead is None:
            listed = ", ".join(self.key_ids) or "none"
            raise TemplateKeyError(
                f"a stored template is encrypted with key {kid!r}, which {SETTING} does not list "
                f"(it lists: {listed}); configure the key(s) the database was written with"
            )
        nonce = blob[PREFIX_BYTES : PREFIX_BYTES + NONCE_BYTES]
        try:
            return aead.decrypt(nonce, blob[PREFIX_BYTES + NONCE_BYTES :], context)
        except InvalidTag:
            raise TemplateKeyError(
                f"key {kid!r} of {SETTING} does not open a template sealed under that id: it is not "
                "the key the database was written with (or the row was altered)"
            ) from None

    def needs_rotation(self, blob: bytes) -> bool:
        """Whether ``rotate`` would rewrite this value (plain, or sealed with an older key)."""
        return self.enabled and not bytes(blob).startswith(prefix(self.key_ids[0]))

    # the two kinds of stored template
    def seal_crop(self, png: bytes, person_pk: int) -> bytes:
        return self.seal(png, crop_context(person_pk))

    def open_crop(self, blob: bytes, person_pk: int) -> bytes:
        return self.open(blob, crop_context(person_pk))

    def seal_vector(self, raw: bytes, person_pk: int, model_version: str) -> bytes:
        return self.seal(raw, vector_context(person_pk, model_version))

    def open_vector(self, blob: bytes, person_pk: int, model_version: str) -> bytes:
        return self.open(blob, vector_context(person_pk, model_version))


PLAIN = TemplateCipher()


def of(session: Session) -> TemplateCipher:
    """The cipher of the sessions ``session`` came from (PLAIN for a factory built without one)."""
    return session.info.get(INFO_KEY, PLAIN)
