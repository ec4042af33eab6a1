"""Held-out evaluation sets: help centres Parley was never tuned on (data only)."""
