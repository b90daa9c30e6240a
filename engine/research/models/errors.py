"""The error a model raises when it cannot be fitted as configured."""


class ModelError(ValueError):
    """A model cannot be fitted as configured (e.g. not enough history)."""
