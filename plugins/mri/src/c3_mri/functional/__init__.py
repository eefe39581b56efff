"""Pure tensor kernels of the MR acquisition model (magnitude images (B, C, *spatial))."""
