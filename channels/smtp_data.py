"""SMTP DATA read in blocks and kept in bounded memory: a small mail in memory, a large one
written to a file as it arrives (the parsing worker reads it there and moves it into the blob
store as the original).

aiosmtpd reads DATA a line at a time into a list, joins it, and hands over the whole mail
twice (`content` and `original_content`): for a mail at the 25 MB limit that is three copies
in the daemon and a third of a million awaits. Here the stream is read up to each ".\\r\\n"
or in blocks of what has arrived, never past the end of the data (a pipelining client's next
command stays in the reader), dot-stuffing undone across block boundaries.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

END = b".\r\n"
LINE_END = b"\r\n"


class Unstuffer:
    """Drops the dot that starts a line (RFC 5321 4.5.2) in a stream cut anywhere."""

    def __init__(self) -> None:
        self._carry = LINE_END  # the DATA command's line end: the data starts a line

    def feed(self, block: bytes) -> bytes:
        data = self._carry + block
        self._carry = data[-2:]
        # A removed dot sits after "\r\n", so never in the first two bytes (the carry).
        return data.replace(b"\r\n.", LINE_END)[2:]


@dataclass
class MailData:
    """The bytes of one DATA: in memory up to `spill_bytes`, past that in a file under
    `folder` (the caller removes it, `discard()`, once the mail is handled)."""

    folder: Path
    spill_bytes: int
    limit: int
    size: int = 0
    too_big: bool = False
    _chunks: list[bytes] = field(default_factory=list)
    _file: BinaryIO | None = None
    path: Path | None = None

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.too_big or (self.limit and self.size > self.limit):
            self.too_big = True  # read on to the end, keep nothing: 552 after the data
            self._chunks.clear()
            return
        if self._file is None and self.size > self.spill_bytes:
            self._spill()
        if self._file is not None:
            self._file.write(data)
        else:
            self._chunks.append(data)

    def _spill(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        descriptor, name = tempfile.mkstemp(dir=self.folder, prefix="mail-", suffix=".eml")
        self._file = os.fdopen(descriptor, "wb")
        self.path = Path(name)
        self._file.writelines(self._chunks)
        self._chunks.clear()

    def finish(self) -> bytes:
        """The mail's bytes when in memory (b"" when in the file, which is then complete)."""
        if self._file is not None:
            self._file.close()
            return b""
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data

    def discard(self) -> None:
        if self._file is not None:
            self._file.close()
        if self.path is not None:
            self.path.unlink(missing_ok=True)


async def read_data(reader: asyncio.StreamReader, out: MailData) -> None:
    """Read DATA up to the lone "." line into `out` (dot-stuffing undone). Raises
    asyncio.IncompleteReadError when the connection ends first."""
    unstuff = Unstuffer()
    tail = LINE_END  # the last two bytes read, to tell a lone "." line from "text."
    while True:
        try:
            block = await reader.readuntil(END)
        except asyncio.LimitOverrunError as overrun:
            # No ".\r\n" in what has arrived: take what cannot be part of one and go on.
            block = await reader.read(overrun.consumed)
            tail = (tail + block)[-2:]
            out.write(unstuff.feed(block))
            continue
        if (tail + block)[-5:] == LINE_END + END:
            out.write(unstuff.feed(block[: -len(END)]))
            return
        tail = (tail + block)[-2:]
        out.write(unstuff.feed(block))
