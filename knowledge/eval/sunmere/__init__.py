"""Sunmere Energy, a fictional home-energy installer (with a Chinese arm, Sunmere 中国 / 阳光米尔): a
held-out help centre (data only; see README.md)."""
