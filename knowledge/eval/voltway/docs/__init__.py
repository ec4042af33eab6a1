"""Data only: the Voltway help-centre documents (a package so the wheel ships them)."""
