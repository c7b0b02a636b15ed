"""fastasgi's version, in a leaf of its own: pyproject.toml reads it, the CLI prints it."""

__version__ = "0.1.0"
