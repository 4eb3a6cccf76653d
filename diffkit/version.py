"""diffkit's version: what run directories, sample sidecars and the lab record."""

__version__ = "0.1.0"
