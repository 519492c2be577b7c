"""The triage seam: the enriched message of a new case in, its queue and the reason out.

Rules come with a later change; until then every new case goes to the default queue. The
message handed in already carries `customer`, `history` and `dedup` (its `case_id` not yet:
the case is numbered once its queue is known), which is what rules will look at.
"""

from __future__ import annotations

from normalizer.model import CaseOpen, Triage


class DefaultQueue:
    """Routes every case to one queue."""

    def __init__(self, queue: str) -> None:
        self._queue = queue

    def __call__(self, message: CaseOpen) -> Triage:
        return Triage(queue=self._queue, reason="no triage rules yet: the default queue")
