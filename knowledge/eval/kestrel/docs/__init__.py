"""Data only: the Kestrel help-centre documents (a package so the wheel ships them)."""
