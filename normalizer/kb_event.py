"""What the contact form tells the dispatcher about the knowledge base (queue `kb-events`,
schema "kb-event/1"): which public articles it showed before a message was sent, and which
one a customer accepted as the answer (a deflected contact: no case is opened)."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

KB_EVENT_SCHEMA = "kb-event/1"


class KbEvent(BaseModel):
    """One event; `id` (a ULID) makes a redelivered deflection count once."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_: Literal["kb-event/1"] = Field(default=KB_EVENT_SCHEMA, alias="schema")
    id: str = Field(min_length=26, max_length=26)
    event: Literal["shown", "accepted"]
    at: AwareDatetime
    articles: list[str] = Field(min_length=1, max_length=20)
    language: str | None = Field(default=None, max_length=16)
    touchpoint: str | None = Field(default=None, max_length=200)
    answer: str | None = Field(
        default=None, max_length=300, description="The customer's one line, when accepted."
    )

    @model_validator(mode="after")
    def _one_accepted(self) -> KbEvent:
        if self.event == "accepted" and len(self.articles) != 1:
            raise ValueError("an accepted event names the one article accepted")
        return self

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()
