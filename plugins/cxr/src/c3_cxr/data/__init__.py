"""Chest radiograph cohorts: the procedural demo and CheXpert / MIMIC-CXR style CSVs."""
