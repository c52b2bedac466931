"""bench: a declarative few-shot benchmark suite for CLIP tuning methods."""

__version__ = "0.1.0"
