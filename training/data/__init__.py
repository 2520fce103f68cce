"""Data: aligned-crop cache (prepare once, read by memmap), augmentation, P x K sampler, splits."""
