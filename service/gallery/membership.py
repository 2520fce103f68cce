"""Who is in which collection, in the database (``collections``, ``collection_members``).

A person without a membership row is in ``default``; a person in ``default`` and in named
collections has a row for each, ``default`` included. Stored sets are canonical: ``{default}``
alone is stored as no row. Collections come into being when someone is first added to them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from sqlalchemy import delete, exists, func, select
from sqlalchemy.orm import Session

from service.collection_index import DEFAULT, NAME_PATTERN, memberships
from service.errors import FaceGateError, InvalidRequest
from service.gallery.tables import Collection, CollectionMember, Person

_NAME = re.compile(NAME_PATTERN)


class CollectionNotFound(FaceGateError):
    status, code, title = 404, "collection_not_found", "Collection not found"


class CollectionForbidden(FaceGateError):
    status, code, title = 403, "collection_forbidden", "Collection outside the key's binding"


class LastCollection(FaceGateError):
    status, code, title = 409, "last_collection", "A person is always in a collection"


def check_name(name: str, field: str = "collection") -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidRequest(
            f"collection name {name!r} must be 1 to 64 letters, digits, '.', '_' or '-' (starting with a "
            "letter or digit)",
            field=field,
        )
    return name


def stored_set(names: Iterable[str]) -> frozenset[str]:
    """What is stored for a person in these collections (``{default}`` alone: nothing)."""
    wanted = memberships(names)
    return frozenset() if wanted == {DEFAULT} else wanted


def all_names(s: Session) -> list[str]:
    return list(s.scalars(select(Collection.name).order_by(Collection.name)))


def read(s: Session, person_pks: list[int] | None = None) -> dict[int, frozenset[str]]:
    """{person pk: the collections stored for them} (people with no row are absent: default)."""
    stmt = select(CollectionMember.person_pk, Collection.name).join(
        Collection, Collection.id == CollectionMember.collection_pk
    )
    if person_pks is not None:
        stmt = stmt.where(CollectionMember.person_pk.in_(person_pks))
    out: dict[int, set[str]] = {}
    for pk, name in s.execute(stmt):
        out.setdefault(int(pk), set()).add(name)
    return {pk: frozenset(names) for pk, names in out.items()}


def write(s: Session, person_pk: int, names: Iterable[str]) -> frozenset[str]:
    """Make the person's stored collections exactly ``stored_set(names)`` (collections created as
    needed); returns the collections the person is in."""
    wanted = stored_set(check_name(n) for n in names)
    s.execute(delete(CollectionMember).where(CollectionMember.person_pk == person_pk))
    if wanted:
        known = dict(
            s.execute(select(Collection.name, Collection.id).where(Collection.name.in_(wanted))).all()
        )
        for name in sorted(wanted - set(known)):
            row = Collection(name=name)
            s.add(row)
            s.flush()
            known[name] = row.id
        s.add_all(CollectionMember(collection_pk=known[n], person_pk=person_pk) for n in sorted(wanted))
    s.flush()
    return memberships(wanted)


def edited(
    current: frozenset[str], add: Iterable[str], remove: Iterable[str], person_id: str
) -> frozenset[str]:
    """The collections after adding and removing; removing ``default`` from someone in no other
    collection is refused (a person in no named collection is in ``default``)."""
    after = (set(current) | set(add)) - set(remove)
    if not after:
        if DEFAULT in set(remove):
            raise LastCollection(
                f"{person_id!r} is in no other collection, so stays in {DEFAULT}: add another collection first",
                person_id=person_id,
            )
        return memberships(())
    return memberships(after)


def member_filter(s: Session, name: str):
    """A WHERE clause on ``Person`` selecting the members of collection ``name``."""
    named = (
        select(CollectionMember.person_pk)
        .join(Collection, Collection.id == CollectionMember.collection_pk)
        .where(Collection.name == name)
    )
    if name != DEFAULT:
        return Person.id.in_(named)
    anywhere = exists().where(CollectionMember.person_pk == Person.id)
    return Person.id.in_(named) | ~anywhere


def stored_sizes(s: Session) -> dict[str, int]:
    """{collection: people stored in it}, ``default`` included."""
    sizes = dict(
        s.execute(
            select(Collection.name, func.count(CollectionMember.person_pk))
            .outerjoin(CollectionMember, CollectionMember.collection_pk == Collection.id)
            .group_by(Collection.name)
        ).all()
    )
    in_none = s.scalar(
        select(func.count())
        .select_from(Person)
        .where(~exists().where(CollectionMember.person_pk == Person.id))
    )
    sizes[DEFAULT] = int(sizes.get(DEFAULT, 0)) + int(in_none or 0)
    return {k: int(v) for k, v in sizes.items()}


def searched(named: list[str] | None, bound: str | None, knows) -> tuple[str, ...]:
    """The collections a request searches: those it names, else the key's bound one, else
    ``default``. A bound key naming another is refused (403); a named collection nobody was ever
    added to is not found (404)."""
    if not named:
        return (bound or DEFAULT,)
    outside = [n for n in named if bound is not None and n != bound]
    if outside:
        raise CollectionForbidden(
            f"this key is bound to collection {bound!r} and cannot search {', '.join(map(repr, outside))}",
            collection=bound,
            requested=named,
        )
    unknown = [n for n in named if not knows(n)]
    if unknown:
        raise CollectionNotFound(
            f"no collection {', '.join(map(repr, unknown))} (GET /collections lists them)",
            collections=unknown,
        )
    return tuple(named)


def check_editable(names: Iterable[str], bound: str | None) -> None:
    """A bound key adds people to and removes them from its own collection only."""
    outside = sorted({n for n in names if bound is not None and n != bound})
    if outside:
        raise CollectionForbidden(
            f"this key is bound to collection {bound!r} and cannot change {', '.join(map(repr, outside))}",
            collection=bound,
            requested=outside,
        )
