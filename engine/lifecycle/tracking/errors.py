"""What tracking answers: the errors a store or a registry request raises, and the record
of a logged run. Light (no mlflow, no Polars): the engine process imports it to read the
tracking worker's answers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class TrackingError(RuntimeError):
    """The tracking store cannot be reached or used; outputs on disk are unaffected."""


class RegistryError(ValueError):
    """A registry request cannot be met (unknown version, no previous champion, ...)."""


@dataclass(frozen=True)
class TrackedRun:
    """What logging a run left in the store.

    Attributes
    ----------
    run_id : the MLflow run.
    model_uri : the logged model (``models:/<model id>``), None for a baseline.
    registered : the ``registry.Registered`` version and promotion decision, None for a
        baseline (no fitted model, nothing registered).
    """

    run_id: str
    model_uri: str | None
    registered: Any | None

    def summary_lines(self) -> list[str]:
        """The registry's lines of the run's summary."""
        if self.registered is None:
            return ["registry: no fitted model (baseline): nothing registered"]
        return self.registered.summary_lines()
