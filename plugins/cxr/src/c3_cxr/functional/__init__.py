"""Pure tensor kernels of the radiographic imaging chain."""
