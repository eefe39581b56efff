"""C3 plugin for chest radiography (modality ``cxr``, log-attenuation domain)."""

__version__ = "0.1.0"
