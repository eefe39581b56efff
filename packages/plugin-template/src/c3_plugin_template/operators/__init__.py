"""Operator classes, one module per family: params dataclass, sampler and deterministic apply."""
