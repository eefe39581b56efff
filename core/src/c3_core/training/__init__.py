"""Training with the consistency objective."""
