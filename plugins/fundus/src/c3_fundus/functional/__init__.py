"""Pure tensor kernels of the fundus camera model (linear light, (B, 3, H, W))."""
