"""MRI acquisition operators, one family per module."""
