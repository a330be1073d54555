"""tru: erase deletion requests from trained multimodal recommenders, and prove it."""

__version__ = "0.1.0"
