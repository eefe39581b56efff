"""Fundus camera operators, one family per module."""
