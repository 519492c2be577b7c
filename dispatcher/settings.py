"""The dispatcher's settings section; `ingest.settings` assembles it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class DispatcherSettings(BaseModel):
    """How the dispatcher consumes `case-open` and how hard it retries a failing batch."""

    model_config = ConfigDict(extra="forbid")

    prefetch: int = Field(default=200, ge=1, le=5000)
    batch_size: int = Field(default=100, ge=1, le=1000)
    batch_wait_ms: int = Field(default=0, ge=0, le=5000)
    attempts: int = Field(default=3, ge=1, le=20)
