"""format=flowed (RFC 3676) plain text re-joined into paragraphs."""

from __future__ import annotations

_SIGNATURE = "-- "


def unflow(text: str, *, delsp: bool = False) -> str:
    """Join soft-broken lines (ending in a space) with the next line of the same quote depth;
    undo space-stuffing; keep the signature separator "-- " as it is."""
    out: list[str] = []
    paragraph: list[str] = []
    depth = 0
    for line in text.split("\n"):
        line = line.rstrip("\r")
        level = len(line) - len(line.lstrip(">"))
        content = line[level:]
        content = content[1:] if content.startswith(" ") else content
        if paragraph and (level != depth or content == _SIGNATURE):
            out.append(_join(depth, paragraph))
            paragraph = []
        depth = level
        if content == _SIGNATURE:
            out.append(_SIGNATURE)
            continue
        soft = content.endswith(" ")
        paragraph.append(content[:-1] if soft and delsp else content)
        if not soft:
            out.append(_join(depth, paragraph))
            paragraph = []
    if paragraph:
        out.append(_join(depth, paragraph))
    return "\n".join(out)


def _join(depth: int, pieces: list[str]) -> str:
    text = "".join(pieces)
    return f"{'>' * depth} {text}" if depth else text
