"""Data only: model files shipped with Parley (a package so the wheel ships them); see README.md."""
