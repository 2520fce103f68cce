"""FaceGate training package: datasets, backbones, losses, training loop, evaluation and export."""
