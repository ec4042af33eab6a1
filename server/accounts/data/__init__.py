"""Data files shipped with the server (see README.md here for their sources and licences)."""
