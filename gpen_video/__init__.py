"""gpen-video: restore the faces in video and film scans with GPEN."""

__version__ = "0.1.0"
