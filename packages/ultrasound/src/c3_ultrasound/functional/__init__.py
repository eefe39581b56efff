"""Pure tensor kernels (no Operator classes, no randomness of their own beyond a passed generator)."""
