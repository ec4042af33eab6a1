"""Voltway, a fictional e-bike and e-scooter maker and rental service: a held-out help centre
(data only; see README.md)."""
