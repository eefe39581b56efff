"""Example third-party C3 plugin for B-mode ultrasound (modality ``us``, envelope domain)."""

__version__ = "0.1.0"
