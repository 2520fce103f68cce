"""GET /collections: the collections and their sizes."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.deps import AdminCaller, RecognizerDep
from service.api.problems import problem_responses
from service.schemas import CollectionOut

router = APIRouter(prefix="/collections", tags=["people"])


@router.get("", response_model=list[CollectionOut], responses=problem_responses(401, 403, 503))
def list_collections(recognizer: RecognizerDep, caller: AdminCaller) -> list[CollectionOut]:
    """Every collection, ``default`` included, with the people stored in it and the N its 1:N
    threshold is computed from."""
    return [
        CollectionOut(name=name, people=people, gallery_size=size)
        for name, (people, size) in recognizer.gallery.collection_sizes().items()
    ]
