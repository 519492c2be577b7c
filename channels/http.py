"""Helpers for channels served on the daemon's HTTP server: bounded bodies, media types."""

from __future__ import annotations

from starlette.requests import Request

from channels.problems import Problem


async def read_body(request: Request, limit: int) -> bytes:
    """Read the request body, refusing with 413 as soon as it is known to exceed `limit`."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def require_media_type(request: Request, *accepted: str) -> None:
    """Refuse with 415 unless the Content-Type is one of `accepted` (parameters ignored)."""
    given = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if given not in accepted:
        raise Problem(
            415,
            "Unsupported Media Type",
            f"send the body as {' or '.join(accepted)}, not {given or 'no Content-Type'}",
            headers={"Accept": ", ".join(accepted)},
        )


def _too_large(limit: int) -> Problem:
    return Problem(413, "Content Too Large", f"the body is limited to {limit} bytes", limit=limit)
