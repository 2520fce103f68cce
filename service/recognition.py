"""Enrol, verify and identify: the domain operations behind the HTTP routes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Generic, TypeVar

import numpy as np

from service import bursts
from service.decisions import Scored, Threshold, identify_outcome, identify_threshold, verify_threshold
from service.enrolment import PreparedEnrolment, prepare_enrolment
from service.errors import DuplicateFace, InvalidRequest, NoFace, ThresholdNotAllowed
from service.gallery import audit, membership, status
from service.gallery.audit import Caller
from service.gallery.gallery import Gallery
from service.gallery.records import PersonRecord
from service.gallery.tables import AuditEvent, as_utc
from service.liveness import binding as liveness
from service.metrics import Metrics
from service.pipeline.face_choice import FaceChoice
from service.pipeline.pipeline import EmbeddedFace, FacePipeline, FaceSelection, Photo, Timings
from service.pipeline.quality import QualityLimits, assess, quality_levels
from service.schemas import (
    CandidateOut,
    ComparedPhotoOut,
    CompareOptions,
    CompareOut,
    EnrollOptions,
    EnrollOut,
    FaceOut,
    IdentifyFaceOut,
    IdentifyOptions,
    IdentifyOut,
    PersonOut,
    QualityOut,
    VerifyOptions,
    VerifyOut,
)
from service.selftrain import AcceptedProbes
from service.settings import Settings


def person_out(record: PersonRecord) -> PersonOut:
    expired = record.expires_at is not None and record.expires_at <= datetime.now(timezone.utc)
    return PersonOut(
        person_id=record.person_id,
        name=record.name,
        created_at=as_utc(record.created_at),
        updated_at=as_utc(record.updated_at),
        model_versions=list(record.model_versions),
        status="suspended" if record.status == "suspended" else "active",
        suspended_at=record.suspended_at,
        expires_at=record.expires_at,
        matchable=record.status == "active" and not expired,
        collections=list(record.collections),
    )


@dataclass(frozen=True)
class PendingFace:
    """Someone accepted for enrolment and not stored yet (``Recognizer.refuse_duplicate``)."""

    person_id: str
    name: str
    embedding: np.ndarray
    collections: tuple[str, ...]


def _accounted(photo: Photo, used: EmbeddedFace) -> dict[str, Any]:
    """Every face of the photo and which one was used (``faces_found``, ``face_index``, ``faces``)."""
    return {
        "faces_found": len(photo.detected),
        "face_index": used.index,
        "faces": [FaceOut.of(f) for f in photo.detected],
    }


GalleryT = TypeVar("GalleryT", bound=Gallery)


class Recognizer(Generic[GalleryT]):
    """One model version's pipeline and gallery, with the service's decision settings.

    Generic in the gallery's class, so that the model lifecycle, whose galleries are
    ``SyncedGallery``, reaches their sync methods with their types.
    """

    def __init__(
        self, pipeline: FacePipeline, gallery: GalleryT, settings: Settings, metrics: Metrics
    ) -> None:
        self.pipeline = pipeline
        self.gallery = gallery
        self.settings = settings
        self.metrics = metrics
        self.card = pipeline.embedder.card
        self.accepted = AcceptedProbes.from_settings(settings, self.card)  # opt-in self-training crops
        self.quality_levels = quality_levels(
            QualityLimits(
                min_eye_distance=settings.min_eye_distance,
                min_sharpness=settings.min_sharpness,
                max_yaw=settings.max_yaw,
                min_detection_score=settings.min_detection_score,
            )
        )

    @property
    def version(self) -> str:
        return self.card.version

    def _process(
        self, data: bytes, selection: FaceSelection, face_index: FaceChoice | int | None = None
    ) -> Photo:
        timings = Timings()
        photo = self.pipeline.process(data, selection, timings, face_index)
        self.metrics.observe_stages(timings.stages)
        return photo

    def _burst(
        self, frames: list[bytes], selection: FaceSelection, face_index: FaceChoice
    ) -> tuple[Photo, int]:
        """The processed photo of the frame that decides, and its number (1 for the first).

        One photo is processed as it is. Of a burst (``service.bursts``) every frame is processed
        and the frame whose largest face ranks first by quality decides; a frame without a face is
        passed over (a burst without any face is ``no_face``)."""
        if len(frames) == 1:
            return self._process(frames[0], selection, face_index), 1
        if face_index.given:
            raise InvalidRequest(
                "face_index or face_box chooses a face of one photo: send it with a single photo, not a burst",
                frames=len(frames),
            )
        medium = self.quality_levels["medium"]
        found: list[tuple[int, Photo, dict[str, float]]] = []
        for number, data in enumerate(frames, 1):
            try:
                photo = self._process(data, selection)
            except NoFace:
                continue
            face = photo.faces[0]
            found.append((number, photo, assess(face.face, face.crop, medium).to_dict()))
        if not found:
            raise NoFace(f"no face was found in any of the {len(frames)} frames", frames=len(frames))
        number, photo, _ = found[bursts.best_frame([m for _, _, m in found], medium)]
        return photo, number

    def _scored(self, face: EmbeddedFace, k: int, collections: tuple[str, ...]) -> list[Scored]:
        return self._scored_embedding(face.embedding, k, collections)

    def _scored_embedding(self, embedding: np.ndarray, k: int, collections: tuple[str, ...]) -> list[Scored]:
        cal = self.card.calibration
        return [
            Scored(c.person_id, c.name, c.similarity, cal.score(c.similarity))
            for c in self.gallery.search(embedding, k, collections)
        ]

    def _searched(self, named: list[str] | None, caller: Caller) -> tuple[str, ...]:
        """The collections a request searches (``membership.searched``)."""
        return membership.searched(named, caller.collection, self.gallery.knows_collection)

    def edit_collections(
        self, person_id: str, add: list[str], remove: list[str], caller: Caller
    ) -> PersonRecord:
        """Add the person to or remove them from collections (a bound key: its own only), audited."""
        membership.check_editable([*add, *remove], caller.collection)
        return self.gallery.edit_collections(
            person_id, add, remove, audit.row(caller, "person_update", model_version=self.version)
        )

    def enroll(self, data: bytes, opts: EnrollOptions, caller: Caller) -> EnrollOut:
        named = opts.named()
        membership.check_editable(named or (), caller.collection)  # refused before any work
        timings = Timings()
        try:
            prepared = prepare_enrolment(self.pipeline, self.quality_levels, data, opts, timings)
        finally:
            self.metrics.observe_stages(timings.stages)
        if not opts.allow_duplicate:
            self.refuse_duplicate(
                prepared.embedding, opts.person_id, self.enrolment_collections(opts, caller)
            )
        record = self.gallery.enroll(
            person_id=opts.person_id,
            name=opts.name,
            **prepared.stored(),
            replace=opts.replace,
            collections=named,
            new_collections=[caller.collection] if caller.collection else None,
            audit=self.enrolment_audit(prepared, caller),
        )
        replaced = record.replaced
        self.metrics.gallery_size.set(self.gallery.size())
        return EnrollOut(
            person=person_out(record),
            face=FaceOut.of(prepared.face),
            quality=QualityOut.of(prepared.quality),
            model_version=self.version,
            replaced=replaced,
            faces_found=len(prepared.detected),
            face_index=prepared.face_index,
            faces=[FaceOut.of(f) for f in prepared.detected],
        )

    @staticmethod
    def enrolment_collections(opts: EnrollOptions, caller: Caller) -> tuple[str, ...]:
        """The collections a new enrolment is checked for duplicates in (those it names, else the
        key's bound one, else ``default``)."""
        return tuple(opts.named() or (caller.collection or "default",))

    def enrolment_audit(self, prepared: PreparedEnrolment, caller: Caller) -> AuditEvent:
        return audit.row(
            caller, "enroll", model_version=self.version, detail={"quality": prepared.quality.to_dict()}
        )

    def delete(self, person_id: str, caller: Caller) -> None:
        """Remove the person everywhere; the audit row is committed with the deletion."""
        self.gallery.delete(person_id, audit.row(caller, "delete", model_version=self.version))
        self.accepted.forget(person_id)
        self.metrics.gallery_size.set(self.gallery.size())

    def export(self, person_id: str, caller: Caller) -> dict[str, Any]:
        """Everything stored about the person (a data-subject access request), audited."""
        return self.gallery.export(person_id, audit.row(caller, "export", model_version=self.version))

    def refuse_duplicate(
        self,
        embedding: np.ndarray,
        person_id: str | None,
        collections: tuple[str, ...],
        pending: Sequence[PendingFace] = (),
    ) -> None:
        """Raise ``DuplicateFace`` when the face matches someone else enrolled in ``collections``,
        or someone in ``pending`` (people about to be stored together: ``facegate enroll-dir``'s batch).

        Looking for this face among everyone enrolled is a 1:N search, so it takes /identify's
        threshold for the current gallery size (``identify_threshold``; the pending people among
        ``collections`` count in N): a distinct person is refused with the false-positive
        identification rate FACEGATE_TARGET_FPIR, whatever N is.
        """
        cal = self.card.calibration
        among = [p for p in pending if set(p.collections) & set(collections)]
        threshold = identify_threshold(
            cal, self.settings.target_fpir, self.gallery.size(collections) + len(among)
        )
        hits = self._scored_embedding(embedding, 2, collections) + [
            Scored(p.person_id, p.name, s, cal.score(s))
            for p in among
            for s in [float(np.dot(embedding, p.embedding))]
        ]
        for hit in sorted(hits, key=lambda h: -h.score):
            if hit.person_id != person_id and hit.score >= threshold.score:
                raise DuplicateFace(
                    f"this face already matches {hit.person_id} ({hit.name}) with score {hit.score:.3f} "
                    f"(threshold {threshold.score:.3f}: {threshold.basis}); "
                    "set allow_duplicate=true to enrol it anyway",
                    person_id=hit.person_id,
                    name=hit.name,
                    score=round(hit.score, 4),
                    threshold=round(threshold.score, 4),
                    threshold_basis=threshold.basis,
                )

    def verify(self, data: bytes | list[bytes], opts: VerifyOptions, caller: Caller) -> VerifyOut:
        """Is the photo (or the best frame of a burst of 2 to 5) the enrolled ``person_id``?"""
        frames = [data] if isinstance(data, bytes) else data
        liveness.require(self.settings, caller, opts.liveness_token)
        reference = self.gallery.embedding_of(opts.person_id)  # PersonNotFound before any work
        if caller.collection is not None and caller.collection not in self.gallery.collections_of(
            opts.person_id
        ):
            raise membership.CollectionForbidden(
                f"this key is bound to collection {caller.collection!r}, which {opts.person_id!r} is not in",
                collection=caller.collection,
            )
        self._refuse_unmatchable(opts.person_id, caller)
        photo, frame = self._burst(frames, FaceSelection.largest, FaceChoice(opts.face_index, opts.face_box))
        face = photo.faces[0]
        cal = self.card.calibration
        live = self._liveness(opts.liveness_token, face, caller, "verify", opts.person_id)
        similarity = float(np.dot(face.embedding, reference))
        score = cal.score(similarity)
        threshold = self._verify_threshold(opts.threshold, caller)
        match = score >= threshold.score
        if match:
            self.accepted.keep(opts.person_id, face.crop, score)
        self.metrics.observe_decision(
            "verify", self.version, "match" if match else "no_match", score, similarity
        )
        self._record(
            caller,
            "verify",
            person_id=opts.person_id,
            result="match" if match else "no_match",
            score=score,
            detail={
                "threshold": threshold.score,
                "faces_found": len(photo.detected),
                "face_index": face.index,
                "frames": len(frames),
                "frame": frame,
                **live,
            },
        )
        return VerifyOut(
            match=match,
            score=score,
            threshold=threshold.score,
            similarity=similarity,
            model_version=self.version,
            face=FaceOut.of(face.face),
            threshold_basis=threshold.basis,
            frames=len(frames),
            frame=frame,
            **_accounted(photo, face),
        )

    def compare(self, a: bytes, b: bytes, opts: CompareOptions, caller: Caller) -> CompareOut:
        """Are the faces of two photos the same person? Nobody enrolled is involved and nothing is
        stored but the audit row; the threshold is /verify's (a 1:1 decision, FACEGATE_TARGET_FAR)."""
        threshold = self._verify_threshold(opts.threshold, caller)  # refused before any work
        choice_a, choice_b = (
            FaceChoice(opts.face_index_a, opts.face_box_a),
            FaceChoice(opts.face_index_b, opts.face_box_b),
        )
        photo_a = self._process(a, FaceSelection.largest, choice_a)
        photo_b = self._process(b, FaceSelection.largest, choice_b)
        face_a, face_b = photo_a.faces[0], photo_b.faces[0]
        similarity = float(np.dot(face_a.embedding, face_b.embedding))
        score = self.card.calibration.score(similarity)
        match = score >= threshold.score
        result = "match" if match else "no_match"
        self.metrics.observe_decision("compare", self.version, result, score, similarity)
        self._record(
            caller,
            "compare",
            result=result,
            score=score,
            detail={
                "threshold": threshold.score,
                "faces_found": [len(photo_a.detected), len(photo_b.detected)],
                "face_index": [face_a.index, face_b.index],
            },
        )
        return CompareOut(
            match=match,
            score=score,
            similarity=similarity,
            threshold=threshold.score,
            threshold_basis=threshold.basis,
            model_version=self.version,
            a=ComparedPhotoOut(face=FaceOut.of(face_a.face), **_accounted(photo_a, face_a)),
            b=ComparedPhotoOut(face=FaceOut.of(face_b.face), **_accounted(photo_b, face_b)),
        )

    def _refuse_unmatchable(self, person_id: str, caller: Caller) -> None:
        """A suspended or expired person is never compared with: 409, recorded in the audit trail."""
        reason = self.gallery.availability.reason(person_id)
        if reason is not None:
            self._record(caller, "verify", person_id=person_id, result=reason)
            raise status.refusal(person_id, reason, self.gallery.availability.standing(person_id))

    def set_status(self, person_id: str, change: status.StatusChange, caller: Caller) -> PersonRecord:
        """Suspend, reactivate or set the expiry of a person (audited with the change)."""
        record = self.gallery.set_status(
            person_id, change, audit.row(caller, "person_update", model_version=self.version)
        )
        self.metrics.gallery_size.set(self.gallery.size())
        return record

    def _verify_threshold(self, requested: float | None, caller: Caller) -> Threshold:
        """The configured threshold, or the client's when it is stricter (any threshold: admin).

        A door terminal's key must not be able to lower the bar and force a match."""
        configured = verify_threshold(
            self.card.calibration, self.settings.target_far, self.settings.verify_threshold
        )
        if requested is None:
            return configured
        if requested < configured.score and not caller.is_admin:
            raise ThresholdNotAllowed(
                f"threshold {requested:g} is below the configured {configured.score:.4f}: "
                "only an admin key may lower it",
                configured=round(configured.score, 4),
            )
        return verify_threshold(self.card.calibration, self.settings.target_far, requested)

    def _liveness(
        self, token: str | None, face: EmbeddedFace, caller: Caller, action: str, person_id: str | None = None
    ) -> dict[str, Any]:
        """The liveness token, when sent, used up and bound to the probe face (``service.liveness``)."""
        return liveness.redeem(
            token,
            face.embedding,
            settings=self.settings,
            calibration=self.card.calibration,
            model_version=self.version,
            sessions=self.gallery.session_factory,
            caller=caller,
            action=action,
            person_id=person_id,
        )

    def _record(self, caller: Caller, action: str, **fields: Any) -> None:
        audit.record(
            self.gallery.session_factory, audit.row(caller, action, model_version=self.version, **fields)
        )

    def identify(self, data: bytes | list[bytes], opts: IdentifyOptions, caller: Caller) -> IdentifyOut:
        """Who is in the photo (or in the best frame of a burst of 2 to 5), if anyone?"""
        frames = [data] if isinstance(data, bytes) else data
        searched = self._searched(opts.named(), caller)  # refused before any work
        liveness.require(self.settings, caller, opts.liveness_token)
        photo, frame = self._burst(frames, opts.face_selection, FaceChoice(opts.face_index, opts.face_box))
        live = self._liveness(opts.liveness_token, photo.faces[0], caller, "identify")
        size = self.gallery.size(searched)
        threshold = identify_threshold(self.card.calibration, self.settings.target_fpir, size)
        k = opts.top_k or self.settings.top_k
        answers: list[IdentifyFaceOut] = []
        for face in photo.faces:
            scored = self._scored(face, k, searched)
            result = identify_outcome(scored, threshold, self.settings.ambiguity_margin)
            best = scored[0] if scored else None
            candidates = [
                CandidateOut(person_id=s.person_id, name=s.name, score=s.score, similarity=s.similarity)
                for s in scored
            ]
            person = candidates[0] if result == "match" else None
            if person is not None and best is not None:
                self.accepted.keep(person.person_id, face.crop, best.score)
            if not caller.is_admin:  # who else resembles the face is not a door terminal's business
                candidates = [person] if person is not None else []
            answers.append(
                IdentifyFaceOut(
                    result=result,
                    person=person,
                    score=best.score if best else None,
                    candidates=candidates,
                    face=FaceOut.of(face.face),
                    face_index=face.index,
                )
            )
            self.metrics.observe_decision(
                "identify",
                self.version,
                result,
                best.score if best else None,
                best.similarity if best else None,
            )
        first = answers[0]
        self._record(
            caller,
            "identify",
            person_id=first.person.person_id if first.person else None,
            result=first.result,
            score=first.score,
            detail={
                "threshold": threshold.score,
                "faces": len(answers),
                "faces_found": len(photo.detected),
                "face_index": first.face_index,
                "gallery_size": size,
                "collections": list(searched),
                "frames": len(frames),
                "frame": frame,
                **live,
            },
        )
        checked = {a.face_index: a for a in answers}
        every = [
            checked.get(i)
            or IdentifyFaceOut(
                result="not_checked", person=None, score=None, candidates=[], face=FaceOut.of(f), face_index=i
            )
            for i, f in enumerate(photo.detected)
        ]
        return IdentifyOut(
            result=first.result,
            person=first.person,
            score=first.score,
            threshold=threshold.score,
            threshold_similarity=threshold.similarity,
            threshold_basis=threshold.basis,
            gallery_size=size,
            collections=list(searched),
            promised_fpir=threshold.promised_fpir,
            model_version=self.version,
            candidates=first.candidates,
            face=first.face,
            faces=every,
            faces_found=len(photo.detected),
            face_index=first.face_index,
            frames=len(frames),
            frame=frame,
        )
