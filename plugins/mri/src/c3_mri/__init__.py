"""C3 plugin for brain MRI (modality ``mri``, magnitude domain)."""

__version__ = "0.1.0"
