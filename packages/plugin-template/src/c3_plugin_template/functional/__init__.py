"""Pure tensor kernels, one module per operator family (no classes, no randomness)."""
