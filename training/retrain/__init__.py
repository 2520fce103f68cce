"""The retraining job (``facegate-train retrain``): the gallery's crops as training data, the
torch weights of the model in use, fine-tuning, calibration on held-out pairs, the publishing gate.
"""

from __future__ import annotations

from training.retrain.job import RetrainOptions, RetrainResult, run

__all__ = ["RetrainOptions", "RetrainResult", "run"]
