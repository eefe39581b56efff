"""Template C3 plugin (modality ``example``)."""

__version__ = "0.1.0"
