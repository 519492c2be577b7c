"""The case text from a walked mail: each message's new text, forwarded messages after it."""

from __future__ import annotations

from normalizer.mail.mime import Content, Forwarded
from normalizer.mail.quotes import is_forward, new_text, unmark
from normalizer.text import clean_text


def compose(content: Content, subject: str | None) -> tuple[str, str]:
    """The case text and the full text (quoted history kept, for finding a case reference).

    The case text is the mail's own new text, then for each forwarded message a line
    "Forwarded message from <sender>: <subject>" and that message's new text (its quoted
    history stripped the same way). When the subject marks a forward (Fwd:, WG: ...) and no
    message/rfc822 part carries it, the forward is inline and the text is kept whole: the
    quoted part is what was forwarded.
    """
    own = "\n\n".join(text for text in content.texts if text.strip())
    inline_forward = is_forward(subject) and not content.forwarded
    new = [new_text(own, forwarded=inline_forward)]
    full = [unmark(own)]
    for forwarded in content.forwarded:
        inner_new, inner_full = compose(forwarded.content, forwarded.subject)
        new.append(f"{_heading(forwarded)}\n\n{inner_new}")
        full.append(inner_full)
    return clean_text("\n\n".join(new)), clean_text("\n\n".join(full))


def _heading(forwarded: Forwarded) -> str:
    heading = "Forwarded message"
    if forwarded.sender:
        heading += f" from {forwarded.sender}"
    if forwarded.subject:
        heading += f": {forwarded.subject}"
    return heading
