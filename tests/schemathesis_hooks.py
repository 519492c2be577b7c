"""What the OpenAPI document says in words and a schemathesis run must know (loaded by the
conformance test through SCHEMATHESIS_HOOKS).

- The formats the document names for what JSON Schema cannot spell: "phone" (a number that
  exists), "recent-date-time" (within the last 366 days, not in the future) and
  "message-text" (something besides blanks and control characters).
- An Idempotency-Key stands for the first body it came with: a generated key used again with
  another body is rightly refused (422), so valid cases get keys of their own, and
  `external_id` (the same key in the body) the same value as the header.
"""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import schemathesis
from hypothesis import strategies as st

from normalizer.text import clean_text

NUMBERS = ["+442079460958", "+4930901820", "+14155552671", "+4533120000", "+81312345678"]
_serial = itertools.count()
_RUN = uuid.uuid4().hex[:8]  # keys stay apart from an earlier run's on the same store

schemathesis.openapi.format("phone", st.sampled_from(NUMBERS))
schemathesis.openapi.format(
    "recent-date-time",
    st.integers(min_value=60, max_value=365 * 86_400).map(
        lambda seconds: (datetime.now(UTC) - timedelta(seconds=seconds)).isoformat()
    ),
)

schemathesis.openapi.format(
    "message-text", st.text(min_size=1, max_size=2_000).filter(lambda text: clean_text(text) != "")
)


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: Any) -> None:
    """Give a valid case an idempotency key of its own (header and external_id alike)."""
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return
    unique = f"-{_RUN}-{next(_serial)}"
    headers = case.headers if case.headers is not None else {}
    body = case.body if isinstance(case.body, dict) else {}
    key = headers.get("Idempotency-Key")
    external_id = body.get("external_id")
    if isinstance(key, str):
        key = headers["Idempotency-Key"] = key[: 200 - len(unique)] + unique
    if isinstance(external_id, str):
        body["external_id"] = key or external_id[: 200 - len(unique)] + unique
