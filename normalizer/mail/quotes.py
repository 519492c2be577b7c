"""The customer's new text: quoted history, reply headers and signatures cut off.

Line-based and language-aware. Lines quoted with ">" are dropped wherever they are (so an
answer written between quotes survives), together with the attribution line introducing
them. Everything from the first of these is cut: a signature separator ("-- ", RFC 3676),
an "Original Message" separator, an Outlook-style header block (From/Sent/To/Subject in
several languages), an attribution line not followed by ">" lines (clients that quote
without markers), and the start of a quote container marked while converting HTML.
A forwarding marker ("Forwarded message", "Begin forwarded message:") stops the search:
forwarded content is what the customer wants us to read. If nothing would be left, the
whole text is kept.
"""

from __future__ import annotations

import re

from normalizer.mail.html import QUOTE_MARK

_MAX_LINE = 400
_COLONS = (":", "\uff1a")  # ASCII and full-width (CJK) colons
_QUOTED = re.compile(r"^[ \t]{0,3}>")
_SIGNATURE = re.compile(r"^-- ?$")
_SEPARATOR = re.compile(
    r"^\s*-{2,}\s*(?:original message|original|ursprüngliche nachricht|originalnachricht"
    r"|message d'origine|mensaje original|oprindelig meddelelse|originalmeddelande"
    r"|opprinnelig melding|oorspronkelijk bericht|messaggio originale|mensagem original"
    r"|исходное сообщение|原始邮件|原始郵件|原邮件|元のメッセージ|オリジナルメッセージ)"
    r"\s*-{2,}\s*$",
    re.IGNORECASE,
)
_FORWARD = re.compile(
    r"^\s*(?:-{2,}\s*(?:forwarded message|weitergeleitete nachricht|message transféré"
    r"|mensaje reenviado|videresendt meddelelse|vidarebefordrat meddelande|doorgestuurd bericht"
    r"|messaggio inoltrato|mensagem encaminhada|转发邮件|转发的邮件|轉寄郵件|転送メッセージ"
    r"|転送されたメッセージ)\s*-{2,}|begin forwarded message:"
    r"|anfang der weitergeleiteten nachricht:"
    r"|début du message réexpédié\s*:|inicio del mensaje reenviado:)\s*$",
    re.IGNORECASE,
)
_FORWARD_SUBJECT = re.compile(
    r"^\s*(?:\[[^\]]{0,40}\]\s*)?(?:fwd?|wg|tr|rv|vs|doorst|enc|pd|i|转发|轉寄|転送)\s*[:\uff1a]",
    re.IGNORECASE,
)
# Attribution lines ("On <date>, <who> wrote:"). Those opening with a fixed word may be wrapped
# over up to three lines; the others must fit one line. All end with a colon, which is checked
# before any pattern runs.
_WRAPPED_ATTRIBUTIONS = tuple(
    re.compile(pattern, re.IGNORECASE)
    for pattern in (
        r"^on\b.{1,300}\bwrote\s*:$",
        r"^am\b.{1,300}\bschrieb\b.{0,200}:$",
        r"^le\b.{1,300}\ba\s+écrit\s*:$",
        r"^el\b.{1,300}\bescribió\s*:$",
        r"^den\b.{1,300}\bskrev\b.{0,200}:$",
        r"^op\b.{1,300}\bschreef\b.{0,200}:$",
        r"^il\b.{1,300}\bha\s+scritto\s*:$",
        r"^em\b.{1,300}\bescreveu\s*:$",
        r"^在.{1,300}(?:写道|寫道)\s*[:\uff1a]$",
        r"^\d{4}年\d{1,2}月\d{1,2}日.{1,200}[:\uff1a]$",
    )
)
_LINE_ATTRIBUTIONS = tuple(
    re.compile(pattern, re.IGNORECASE)
    for pattern in (
        r"^.{0,200}?[于於@].{0,200}?(?:写道|寫道)\s*[:\uff1a]$",
        r"^.{0,300}(?:さんは書きました|は書きました|さんが書きました)\s*[:\uff1a]$",
    )
)
_FROM = (
    r"from|von|de|fra|från|van|da|od|от|lähettäjä|feladó|kimden|发件人|發件人|寄件者|寄件人"
    r"|差出人|보낸 사람"
)
_FIELD = (
    r"sent|date|gesendet|datum|envoyé|enviado|fecha|sendt|dato|skickat|verzonden|inviato|data"
    r"|wysłano|отправлено|lähetetty|gönderildi|tarih|发送时间|發送時間|日期|时间|寄件日期|送信日時"
    r"|日付|보낸 날짜|to|an|à|a|para|til|till|aan|do|кому|vastaanottaja|kime|收件人|宛先"
    r"|받는 사람|cc|kopie|copie|kopi|kopia|抄送|副本|subject|betreff|objet|asunto|emne|ämne"
    r"|onderwerp|oggetto|assunto|temat|тема|aihe|konu|主题|主旨|件名|제목"
)
_HEADER_FROM = re.compile(rf"^\s*\*?\s*(?:{_FROM})\s*\*?\s*[:\uff1a]", re.IGNORECASE)
_HEADER_FIELD = re.compile(rf"^\s*\*?\s*(?:{_FIELD})\s*\*?\s*[:\uff1a]", re.IGNORECASE)
_INLINE_SENT = re.compile(r"\s(?:sent|gesendet|envoyé|enviado|sendt|skickat)\s*:", re.IGNORECASE)
_HEADER_WINDOW = 8
_RULE = re.compile(r"^[\s_\-=*~.]*$")
_MOBILE = re.compile(
    r"^\s*(?:sent from my|sent from outlook|get outlook for|von meinem .{1,40} gesendet"
    r"|envoyé de mon|enviado desde mi|enviado do meu|sendt fra min|skickat från min"
    r"|verzonden met|inviato da)\b.{0,60}$",
    re.IGNORECASE,
)


def new_text(text: str, *, forwarded: bool = False) -> str:
    """The text before the quoted history; all of it if stripping would leave nothing.

    `forwarded` (the subject marks a forward) keeps everything: there the quoted part is
    the content.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not forwarded:
        kept = "\n".join(_trim(_scan(text.split("\n"))))
        if unmark(kept).strip():
            return unmark(kept)
    return unmark(text)


def is_forward(subject: str | None) -> bool:
    """Whether a subject marks a forward (Fwd:, FW:, WG:, TR:, RV:, 转发: ...)."""
    return bool(subject and _FORWARD_SUBJECT.match(subject))


def unmark(text: str) -> str:
    """The text without the quote marks html.py placed."""
    return text.replace(QUOTE_MARK, "") if QUOTE_MARK in text else text


def _scan(lines: list[str]) -> list[str]:
    kept: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if _FORWARD.match(line):
            return kept + lines[index:]
        if _cuts(lines, index):
            return kept
        span = _attribution(lines, index)
        if span:
            following = _next_filled(lines, index + span)
            if following is None or not _QUOTED.match(lines[following]):
                return kept
            index += span
            continue
        if not _QUOTED.match(line):
            kept.append(line)
        index += 1
    return kept


def _cuts(lines: list[str], index: int) -> bool:
    line = lines[index]
    return (
        QUOTE_MARK in line
        or bool(_SIGNATURE.match(line))
        or bool(_SEPARATOR.match(line))
        or _header_block(lines, index)
    )


def _header_block(lines: list[str], index: int) -> bool:
    """An Outlook-style block: a From line, then two more header lines close below (or a
    From line that carries the Sent field itself)."""
    line = lines[index]
    if len(line) > _MAX_LINE or not _HEADER_FROM.match(line):
        return False
    if _INLINE_SENT.search(line):
        return True
    window = lines[index + 1 : index + 1 + _HEADER_WINDOW]
    return sum(1 for other in window if _HEADER_FIELD.match(other)) >= 2


def _attribution(lines: list[str], index: int) -> int:
    """How many lines (1 to 3) an attribution starting here spans; 0 if none does."""
    first = lines[index].strip()
    if not first or len(first) > _MAX_LINE or _QUOTED.match(lines[index]):
        return 0
    if first.endswith(_COLONS) and any(p.match(first) for p in _LINE_ATTRIBUTIONS):
        return 1
    joined = ""
    for span, line in enumerate(lines[index : index + 3], 1):
        joined = f"{joined} {line.strip()}" if joined else first
        if len(joined) > _MAX_LINE:
            return 0
        if joined.endswith(_COLONS) and any(p.match(joined) for p in _WRAPPED_ATTRIBUTIONS):
            return span
    return 0


def _next_filled(lines: list[str], start: int) -> int | None:
    for index in range(start, len(lines)):
        if lines[index].strip():
            return index
    return None


def _trim(lines: list[str]) -> list[str]:
    """Without trailing blank or rule lines and a trailing "Sent from my phone" line."""
    lines = list(lines)
    while lines and _RULE.match(lines[-1]):
        lines.pop()
    if lines and _MOBILE.match(lines[-1]):
        lines.pop()
        while lines and _RULE.match(lines[-1]):
            lines.pop()
    return lines
