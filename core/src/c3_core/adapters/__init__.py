"""Thin adapters that run any registered C3 operator inside MONAI or TorchIO pipelines.

Import the submodule you need (``c3_core.adapters.monai`` or ``c3_core.adapters.torchio``);
each imports its library only when imported itself.
"""
