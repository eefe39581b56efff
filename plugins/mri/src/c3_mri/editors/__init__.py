"""Semantic editors."""
