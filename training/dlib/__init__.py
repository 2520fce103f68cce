"""dlib's face ResNet: the reader of dlib's serialisation format, the network parser, the
weights loader and finder, the ONNX importer and the MTCNN -> dlib-chip template fit.
"""

from __future__ import annotations

from training.dlib.importer import import_dlib
from training.dlib.net import DlibNetwork, read_dat
from training.dlib.template import fit_template
from training.dlib.weights import find_dat, load_dlib_network

__all__ = ["DlibNetwork", "find_dat", "fit_template", "import_dlib", "load_dlib_network", "read_dat"]
