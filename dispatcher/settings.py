"""The dispatcher's settings section; `ingest.settings` assembles it."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from normalizer.model import Channel


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DedupSettings(_Section):
    """Windows of deduplication levels 2 and 3, and when a follow-up reopens a case.

    `duplicate_window_h`: the same customer sending the same content again within this time
    (any channel) is a duplicate of the first case. `conversation_window_min`: a message on a
    conversation channel within this time of the last one of an open case continues it.
    `reopen_within_days`: a follow-up to a case closed (or resolved) no longer ago reopens it;
    later it opens a new case linked to the old one.
    """

    duplicate_window_h: float = Field(default=24.0, gt=0, le=24 * 90)
    conversation_window_min: float = Field(default=30.0, gt=0, le=7 * 24 * 60)
    conversation_channels: list[Channel] = Field(
        default_factory=lambda: ["sms", "whatsapp", "chat"]
    )
    reopen_within_days: float = Field(default=14.0, ge=0, le=3650)


class HistorySettings(_Section):
    """What history is attached: how many recent cases, when a contact counts as a repeat."""

    recent_cases: int = Field(default=5, ge=0, le=50)
    repeat_contact_count: int = Field(default=3, ge=1, le=1000)
    repeat_contact_days: int = Field(default=7, ge=1, le=90)


class RetentionSettings(_Section):
    """How long dedup records and content fingerprints are kept; pruned every interval.

    A message older than `message_days` is forgotten: a repeat of it would open a new case and
    it no longer counts in contact history. Fingerprints only serve level 2, so they may go
    sooner, but never before the duplicate window has passed.
    """

    message_days: int = Field(default=180, ge=1, le=3650)
    fingerprint_h: float = Field(default=72.0, gt=0)
    prune_interval_s: float = Field(default=3600.0, gt=0)


class DispatcherSettings(_Section):
    """How the dispatcher consumes `case-open` and how hard it retries a failing batch."""

    prefetch: int = Field(default=600, ge=1, le=5000)
    instance: int = Field(default=0, ge=0)
    instances: int = Field(default=1, ge=1, le=256)
    standby_delay_s: float = Field(default=2.0, ge=0, le=600)
    handback_s: float = Field(default=30.0, gt=0, le=3600)
    batch_size: int = Field(default=300, ge=1, le=1000)
    batch_wait_ms: int = Field(default=0, ge=0, le=5000)
    attempts: int = Field(default=3, ge=1, le=20)
    retry_first_s: float = Field(default=0.2, gt=0, le=60)
    retry_max_s: float = Field(default=5.0, gt=0, le=600)
    case_ref_prefix: str = Field(default="C-", min_length=1, max_length=10)
    dedup: DedupSettings = Field(default_factory=DedupSettings)
    history: HistorySettings = Field(default_factory=HistorySettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)

    @model_validator(mode="after")
    def _instance_of_instances(self) -> DispatcherSettings:
        if self.instance >= self.instances:
            raise ValueError(f"instance must be below instances ({self.instances})")
        return self

    def owns(self, partition: int) -> bool:
        """Whether this dispatcher is the first to take a partition (the others stand by)."""
        return partition % self.instances == self.instance

    @model_validator(mode="after")
    def _fingerprints_outlive_the_window(self) -> DispatcherSettings:
        if self.retention.fingerprint_h < self.dedup.duplicate_window_h:
            raise ValueError(
                "retention.fingerprint_h must be at least dedup.duplicate_window_h "
                "(fingerprints are what finds duplicates)"
            )
        return self


class KbSettings(_Section):
    """The knowledge base: a folder of Markdown articles, indexed at start and again when a
    file changes (checked every few seconds).

    `path`: the folder (relative to the settings file); unset turns the knowledge base off.
    `suggestions`: how many articles a forwarded case carries (`kb.suggestions`), `form`:
    how many public ones the contact form offers before a message is sent; `min_score`: a
    match scoring less (0 to 1) is not suggested at all.
    """

    path: Path | None = None
    suggestions: int = Field(default=3, ge=1, le=20)
    form: int = Field(default=3, ge=0, le=10)
    min_score: float = Field(default=0.25, ge=0, le=1)


class IncidentSettings(_Section):
    """Incident detection: messages of `min_customers` different customers saying the same
    within `window_min` form an incident (and keep it growing while they go on).

    `similarity`: the estimated Jaccard similarity (0 to 1) of two messages' shingles
    (words, or character pairs where words are not separated by spaces) from which they say
    the same; `min_shingles`: messages shorter than this are never compared ("thanks!").
    """

    enabled: bool = True
    min_customers: int = Field(default=5, ge=2, le=10_000)
    window_min: float = Field(default=30.0, gt=0, le=7 * 24 * 60)
    similarity: float = Field(default=0.35, gt=0, lt=1)
    min_shingles: int = Field(default=3, ge=1, le=1000)
