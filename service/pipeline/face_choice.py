"""A client's choice of one face of a photo: by ``face_index`` or by ``face_box``.

``face_index`` counts in the documented order of the photo's faces (``face_order``: largest box
first, ties by position). ``face_box`` is a box ``x1, y1, x2, y2`` in the photo's pixels after
EXIF rotation, the form the ``faces`` list reports boxes in, so a client can send back any box it
was shown or one it drew: the detected face whose box overlaps it most (intersection over union)
is used, when that overlap is at least ``MIN_BOX_IOU``; else ``face_box_no_match``. Giving both
is refused (``face_choice_conflict``) before the photo is read.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.errors import FaceBoxNoMatch, FaceChoiceConflict, FaceIndexOutOfRange
from service.pipeline.face import Face

Box = tuple[float, float, float, float]  # x1, y1, x2, y2

MIN_BOX_IOU = 0.3
"""The least intersection over union of ``face_box`` with a detected face's box for that face to
be the one meant: a box drawn loosely round a face (1.5 times its width and height: 0.44) or
shifted by a third of its width (0.5) still passes, a box round two faces side by side (0.5 each
at best) picks the one it covers more, and a box where no face was found (0) is refused."""


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes ``x1, y1, x2, y2`` (0 when either is empty)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0.0) * max(h, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass(frozen=True)
class FaceChoice:
    """At most one of ``index`` and ``box``; neither: the route's face-selection policy decides."""

    index: int | None = None
    box: Box | None = None

    def __post_init__(self) -> None:
        if self.index is not None and self.box is not None:
            raise FaceChoiceConflict(
                "choose the face by face_index or by face_box, not both",
                face_index=self.index,
                face_box=list(self.box),
            )

    @property
    def given(self) -> bool:
        return self.index is not None or self.box is not None

    def pick(self, faces: list[Face]) -> int | None:
        """The chosen face's index in ``faces`` (already in ``face_order``), or None if none is chosen."""
        if self.index is not None:
            if self.index >= len(faces):
                raise FaceIndexOutOfRange(
                    f"face_index {self.index} chooses no face: the photo holds {len(faces)} "
                    f"(face_index counts from 0, largest face first)",
                    face_index=self.index,
                    faces_found=len(faces),
                    faces=[f.to_dict() for f in faces],
                )
            return self.index
        if self.box is None:
            return None
        overlaps = [iou(self.box, f.box) for f in faces]
        best = max(range(len(faces)), key=lambda i: (overlaps[i], -i))
        if overlaps[best] < MIN_BOX_IOU:
            raise FaceBoxNoMatch(
                f"no face found in the photo overlaps face_box enough: the best overlap "
                f"(intersection over union) is {overlaps[best]:.2f}, at least {MIN_BOX_IOU:g} is needed; "
                f"faces lists the {len(faces)} found",
                face_box=list(self.box),
                best_iou=round(overlaps[best], 3),
                min_iou=MIN_BOX_IOU,
                faces_found=len(faces),
                faces=[f.to_dict() for f in faces],
            )
        return best


def as_choice(choice: FaceChoice | int | None) -> FaceChoice:
    """A bare ``face_index`` (or None) as a FaceChoice."""
    return choice if isinstance(choice, FaceChoice) else FaceChoice(index=choice)
