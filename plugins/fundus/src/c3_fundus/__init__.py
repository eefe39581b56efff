"""C3 plugin for fundus photography (modality ``fundus``)."""

__version__ = "0.1.0"
