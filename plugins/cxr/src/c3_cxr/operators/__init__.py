"""Radiography operators, one family per module."""
