"""Blob names that make Azure's listing order the contract's byte order.

Azure lists blob names in UTF-16 code-unit order (Azurite too); the contract promises UTF-8
byte order, i.e. code-point order. The two differ only where characters U+E000..U+FFFF meet
characters beyond U+FFFF: UTF-16 puts the latter (surrogate pairs, D800..DFFF) first. So
each character in U+E000..U+FFFF is stored behind the escape U+D7FF (the last code point below
the surrogates), and U+D7FF itself as U+D7FF + "0". The mapping is per character, order
preserving and prefix-free, so prefix listing and markers work on stored names unchanged.
Every key without such characters (nearly all: ASCII, Latin, CJK, Hangul, emoji) is stored
under its own name; keys with e.g. fullwidth forms (U+FF01..U+FF5E) show the escape in tools
that look at the container directly.
"""

from __future__ import annotations

ESCAPE = "\ud7ff"
_ESCAPED_ESCAPE = ESCAPE + "0"


def to_blob_name(key: str) -> str:
    if not any(ch == ESCAPE or "\ue000" <= ch <= "\uffff" for ch in key):
        return key
    out = []
    for ch in key:
        if ch == ESCAPE:
            out.append(_ESCAPED_ESCAPE)
        elif "\ue000" <= ch <= "\uffff":
            out.append(ESCAPE + ch)
        else:
            out.append(ch)
    return "".join(out)


def from_blob_name(name: str) -> str:
    if ESCAPE not in name:
        return name
    out = []
    i = 0
    while i < len(name):
        ch = name[i]
        if ch == ESCAPE and i + 1 < len(name):
            nxt = name[i + 1]
            out.append(ESCAPE if nxt == "0" else nxt)
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)
