"""MRI cohorts: the synthesised MS-lesion demo and NIfTI folders/CSVs."""
