"""Accent- and case-insensitive people search, the same on SQLite and PostgreSQL.

``fold`` is the comparison key: compatibility decomposition (NFKD), combining marks dropped,
case folded, and the Latin letters that do not decompose (ø, ł, đ, æ, œ, þ, ...) spelled out, so
"chavez" finds "Hugo Chávez" and "Ø" finds "Søren". The stored names are not changed and no
column is added: on SQLite the database calls ``fold`` itself (a registered function); on
PostgreSQL, whose ``lower()`` depends on the database's locale and which may lack ``unaccent``,
the same folding is spelled as ``translate()`` over every letter of the Latin, Greek and Cyrillic
blocks (and ``replace()`` for the letters that fold to two), computed here from ``fold``.
"""

from __future__ import annotations

import functools
import unicodedata

from sqlalchemy import ColumnElement, func
from sqlalchemy.orm import InstrumentedAttribute, Session

SQLITE_FUNCTION = "facegate_fold"

_SPELLED = {
    "ø": "o",
    "ł": "l",
    "đ": "d",
    "ð": "d",
    "ħ": "h",
    "ı": "i",
    "ŧ": "t",
    "æ": "ae",
    "œ": "oe",
    "þ": "th",
}
# the blocks translate() covers on PostgreSQL: ASCII letters, Latin-1 to Latin Extended-B, IPA is
# left out, Greek and Coptic, Cyrillic (and its supplement), Latin Extended Additional
_BLOCKS = ((0x41, 0x5A), (0xC0, 0x24F), (0x370, 0x3FF), (0x400, 0x52F), (0x1E00, 0x1EFF))


def fold(text: str) -> str:
    """The search key of ``text``: no accents, no case."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    return "".join(_SPELLED.get(c, c) for c in plain)


@functools.cache
def _pg_tables() -> tuple[str, str, tuple[tuple[str, str], ...]]:
    """translate()'s from and to strings (one letter to one) and the replace() pairs (one to two)."""
    src, dst, pairs = [], [], []
    for lo, hi in _BLOCKS:
        for code in range(lo, hi + 1):
            c = chr(code)
            if not unicodedata.category(c).startswith("L"):
                continue
            key = fold(c)
            if key == c:
                continue
            if len(key) == 1:
                src.append(c)
                dst.append(key)
            elif key:
                pairs.append((c, key))
    # combining marks last, with no letter to become: translate() deletes them (a name stored
    # decomposed, "a" + U+0301, folds as the precomposed "á" does)
    marks = [chr(c) for c in range(0x300, 0x370)]
    return "".join(src) + "".join(marks), "".join(dst), tuple(pairs)


def _fold_sql(text: str | None) -> str | None:
    """``fold`` as SQLite calls it: NULL stays NULL."""
    return None if text is None else fold(text)


def folded(s: Session, column: ColumnElement[str] | InstrumentedAttribute[str]) -> ColumnElement[str]:
    """``column`` folded by the database of ``s`` as ``fold`` folds in Python."""
    if s.get_bind().dialect.name == "sqlite":
        raw = s.connection().connection.dbapi_connection
        assert raw is not None  # a live connection of this session
        raw.create_function(SQLITE_FUNCTION, 1, _fold_sql, deterministic=True)  # per connection, idempotent
        return getattr(func, SQLITE_FUNCTION)(column)
    src, dst, pairs = _pg_tables()
    expr: ColumnElement[str] = column.expression if isinstance(column, InstrumentedAttribute) else column
    for c, key in pairs:
        expr = func.replace(expr, c, key)
    return func.translate(expr, src, dst)
