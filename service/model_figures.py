"""The figures a model version ships beside its card (``<model folder>/figures/``), served read-only.

Only plain image files directly inside that folder are served; a name with a path in it (``..``,
``/``, ``\\``), a hidden file or another type is refused before the file system is touched.
"""

from __future__ import annotations

import re
from pathlib import Path

from service.errors import FigureNotFound, InvalidFigureName

FIGURES = "figures"
MEDIA_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}\.([Pp][Nn][Gg]|[Jj][Pp][Ee]?[Gg]|[Ww][Ee][Bb][Pp])$"
_NAME = re.compile(NAME_PATTERN)


def list_figures(model_folder: Path) -> list[str]:
    """The servable figure file names of a model version, sorted (none: an empty list)."""
    folder = model_folder / FIGURES
    if not folder.is_dir():
        return []
    return sorted(
        p.name for p in folder.iterdir() if p.is_file() and not p.is_symlink() and _NAME.match(p.name)
    )


def figure_file(model_folder: Path, name: str) -> tuple[Path, str]:
    """The path and media type of figure ``name`` of the model version in ``model_folder``."""
    if not _NAME.match(name):
        raise InvalidFigureName(
            f"{name!r} is not a figure file name: one file name (letters, digits, _ and -) ending in "
            f"{', '.join(sorted(MEDIA_TYPES))}, with no folder in it",
            name=name[:200],
        )
    available = list_figures(model_folder)
    if name not in available:
        raise FigureNotFound(
            f"the model in use has no figure {name!r}"
            + (f"; it has {', '.join(available)}" if available else ""),
            figures=available,
        )
    return model_folder / FIGURES / name, MEDIA_TYPES[Path(name).suffix.lower()]
