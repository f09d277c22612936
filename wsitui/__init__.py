"""wsitui: long tile-based inference on whole-slide images, from a terminal."""

__version__ = "0.1.0"
