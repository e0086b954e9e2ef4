"""autoresearch-tui: the autoresearch loop in a terminal app."""

__version__ = "0.1.0"
