"""Evaluation through the service's own preprocessing: verification pairs (LFW's official
lists, sampled pairs), the pipeline embedding cache, verification metrics (k-fold accuracy, ROC,
EER, TAR@FAR), calibration (``a, b`` and the false-accept table) and plots.
"""

from __future__ import annotations

from training.evaluation.calibration import calibrate_model
from training.evaluation.embedding_cache import PipelineConfig, embed_images
from training.evaluation.evaluate import evaluate_folder, evaluate_lfw, pair_scores
from training.evaluation.metrics import VerificationReport, verification_report
from training.evaluation.pairs import PairSet, read_lfw_pairs, sample_pairs

__all__ = [
    "PairSet",
    "PipelineConfig",
    "VerificationReport",
    "calibrate_model",
    "embed_images",
    "evaluate_folder",
    "evaluate_lfw",
    "pair_scores",
    "read_lfw_pairs",
    "sample_pairs",
    "verification_report",
]
