"""FaceGate service: the run-time half (no torch)."""

__version__ = "0.1.0"
