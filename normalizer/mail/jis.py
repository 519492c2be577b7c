"""ISO-2022-JP read through Windows-31J, as Japanese mailers write it (CP50220 in effect).

Python's iso2022_jp codec knows plain JIS X 0208 only, while real mail carries the NEC and
IBM extensions (circled digits, "㈱", roman numerals). Re-encoding each JIS pair as Shift_JIS
and decoding with cp932 reads those too.
"""

from __future__ import annotations

_ESCAPES = {b"(B": "ascii", b"(J": "ascii", b"(I": "kana", b"$@": "double", b"$B": "double"}


def decode_iso2022jp_as_cp932(data: bytes) -> str:
    """Decode ISO-2022-JP; raises ValueError (UnicodeDecodeError included) on anything else."""
    out = bytearray()
    mode = "ascii"
    i, n = 0, len(data)
    while i < n:
        byte = data[i]
        if byte == 0x1B:
            mode = _ESCAPES.get(bytes(data[i + 1 : i + 3]), "")
            if not mode:
                raise ValueError("unsupported ISO-2022-JP escape sequence")
            i += 3
        elif byte >= 0x80:
            raise ValueError("8-bit byte in ISO-2022-JP")
        elif byte in (0x0A, 0x0D) or mode == "ascii":
            out.append(byte)
            i += 1
        elif mode == "kana":
            out.append(byte + 0x80)
            i += 1
        else:
            out += _shift_jis(byte, data[i + 1] if i + 1 < n else 0)
            i += 2
    return out.decode("cp932")


def _shift_jis(j1: int, j2: int) -> bytes:
    """One JIS X 0208 row/cell pair as its Shift_JIS bytes."""
    if not (0x21 <= j1 <= 0x7E and 0x21 <= j2 <= 0x7E):
        raise ValueError("byte outside the JIS X 0208 range")
    s1 = (j1 - 0x21) // 2 + 0x81
    if s1 > 0x9F:
        s1 += 0x40
    s2 = j2 + (0x1F + (j2 >= 0x60) if j1 & 1 else 0x7E)
    return bytes((s1, s2))
