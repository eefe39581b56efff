"""Ultrasound acquisition operators, one family per module (envelope domain, 2-D, 1 channel)."""
