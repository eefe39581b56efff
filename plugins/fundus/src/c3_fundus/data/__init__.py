"""Fundus cohorts: the procedural demo and EyePACS / Messidor-2 / APTOS style CSVs."""
