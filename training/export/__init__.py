"""Export: any backbone to ONNX in FaceGate's model contract (parity-checked against
onnxruntime), a training run to a model folder, fused, adapted and int8 (``quantize``) versions of
models, and model cards (the shipped default's included).
"""

from __future__ import annotations

from training.export.onnx_export import ExportParityError, export_onnx, write_model_card
from training.export.run import export_run

__all__ = ["ExportParityError", "export_onnx", "export_run", "write_model_card"]
