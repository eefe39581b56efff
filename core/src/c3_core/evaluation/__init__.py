"""Evaluation: neighbourhoods drawn per batch, gated, scored, and written as per-case tables."""
