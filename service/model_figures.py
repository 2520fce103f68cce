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
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}\.[A-Za-z]{3,4}$")


def list_figures(model_folder: Path) -> list[str]:
    """The servable figure file names of a model version, sorted (none: an empty list)."""
    folder = model_folder / FIGURES
    if not folder.is_dir():
        return []
    return sorted(
        p.name
        for p in folder.iterdir()
        if p.is_file() and not p.is_symlink() and _NAME.match(p.name) and p.suffix.lower() in MEDIA_TYPES
    )


def figure_file(model_folder: Path, name: str) -> tuple[Path, str]:
    """The path and media type of figure ``name`` of the model version in ``model_folder``."""
    if not _NAME.match(name) or Path(name).suffix.lower() not in MEDIA_TYPES:
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
