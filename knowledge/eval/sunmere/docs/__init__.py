"""Data only: the Sunmere help-centre documents (a package so the wheel ships them)."""
