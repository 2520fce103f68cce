"""The face pipeline: decode -> detect -> align -> embed. Shared with training."""
