"""Data only: the demo help-centre pages (a package so the wheel ships them)."""
