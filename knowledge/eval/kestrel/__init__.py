"""Kestrel, a fictional home broadband and mobile carrier (with a Chinese arm, Kestrel 中国): a
held-out help centre (data only; see README.md)."""
