"""HTML bodies to readable text with inscriptis, the start of quoted history marked on the way."""

from __future__ import annotations

import re
import textwrap
from functools import lru_cache
from html import unescape
from typing import Any

# Put on a line of its own where a mail client's quote container starts; quotes.py cuts there.
QUOTE_MARK = "\ue000quoted\ue000"
# Containers mail clients wrap quoted history in: Gmail, Thunderbird, Apple Mail, Outlook,
# Yahoo. Bounded scans only: mail HTML can be large and badly formed.
_QUOTE_START = re.compile(
    r"<(?:div|blockquote)\b[^>]{0,2000}?(?:"
    r"class\s*=\s*[\"']?[^\"'>]{0,200}?\b(?:gmail_quote|moz-cite-prefix|yahoo_quoted)\b"
    r"|type\s*=\s*[\"']?cite\b"
    r"|id\s*=\s*[\"']?(?:divRplyFwdMsg|appendonsend)\b)",
    re.IGNORECASE,
)
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]{0,200}\?>", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_INVISIBLE = re.compile(
    r"<(script|style|head|title)\b[^>]*>.*?</\1\s*>|<!--.*?-->", re.IGNORECASE | re.DOTALL
)
_TAG = re.compile(r"<[^>]{0,4000}>")
# Characters of Chinese and Japanese text (ideographs, kana, CJK and full-width punctuation;
# not Hangul, which Korean spaces like Latin).
_WIDE = "\u2e80-\u303f\u3040-\u30ff\u3190-\u9fff\uf900-\ufaff\ufe30-\ufe4f\uff01-\uff60"
# Between two such characters, across the tags around it: a line break in the source, which
# CSS (Text 3, segment break transformation) removes where it would otherwise show as a
# space, and span tags, which inscriptis pads with spaces ("订单\n<b>已发货</b>" and
# "<span>订单</span><span>已发货</span>" read "订单已发货", not "订单 已发货").
_WIDE_GAP = re.compile(rf"(?<=[{_WIDE}])((?:<[^<>]{{0,400}}>|[ \t\r\n])+)(?=[{_WIDE}])")
_SPAN_TAG = re.compile(r"</?span\b[^<>]*>", re.IGNORECASE)
_TAG_OR_SPACE = re.compile(r"<[^<>]*>|[ \t\r\n]+")
_BLOCK_TAG = re.compile(r"<(?:br|/?p|/?div|/?tr|/?li|/?h\d|/?blockquote)\b[^>]{0,4000}>", re.I)


@lru_cache(maxsize=1)
def _inscriptis() -> tuple[Any, Any]:
    """inscriptis (and lxml) are imported on the first HTML body, not with the normaliser."""
    from inscriptis import get_text
    from inscriptis.model.config import ParserConfig

    return get_text, ParserConfig(display_links=False, display_anchors=False, display_images=False)


def html_to_text(html: str) -> str:
    """Readable text of an HTML body; a crude tag stripper if inscriptis gives up."""
    html = _XML_DECLARATION.sub("", _CONTROL.sub("", html))
    html = _WIDE_GAP.sub(_close_wide_gap, html)
    html = _mark_quote(html)
    get_text, config = _inscriptis()
    try:
        text = get_text(html, config)
    except Exception:  # lxml refuses some inputs, inscriptis recurses on deep trees
        text = ""
    if not text.strip():  # lxml silently drops what lies below its depth limit
        text = strip_tags(html)
    return textwrap.dedent(text.replace("\u00a0", " "))


def _close_wide_gap(match: re.Match[str]) -> str:
    """The tags between two Chinese or Japanese characters without spans, and the white
    space among them without line breaks (a space typed on one line stays)."""
    gap = match[0]
    if "\n" not in gap and "span" not in gap.lower():
        return gap
    pieces = []
    for piece in _TAG_OR_SPACE.findall(gap):
        if piece[0] == "<":
            if not _SPAN_TAG.fullmatch(piece):
                pieces.append(piece)
        elif "\n" not in piece:
            pieces.append(piece)
    return "".join(pieces)


def strip_tags(html: str) -> str:
    """Text of HTML without a parser: invisible parts dropped, block tags as line breaks."""
    html = _INVISIBLE.sub("", html)
    html = _BLOCK_TAG.sub("\n", html)
    return unescape(_TAG.sub("", html))


def _mark_quote(html: str) -> str:
    match = _QUOTE_START.search(html)
    if match is None:
        return html
    start = match.start()
    return f"{html[:start]}<div>{QUOTE_MARK}</div>{html[start:]}"
