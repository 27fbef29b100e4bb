r"""Text that is safe to print on a terminal: control characters escaped, so a file name cannot act.

A file name may hold any character but ``/`` and NUL: an escape sequence (``ESC ]`` sets the window
title or a hyperlink, ``ESC [`` moves the cursor), a newline that splits a line of output in two, or a
bidirectional override that reorders what is shown. :func:`printable` writes each of them as its
Python escape, so the line shows what the name holds and stays one line.

Examples:
    >>> print(printable("gallery/\x1b]0;owned\x07\nfake line.jpg"))
    gallery/\x1b]0;owned\x07\nfake line.jpg
    >>> printable("0002_c1s1_000451_03.jpg"), printable("Zoë/\u202egpj.exe")
    ('0002_c1s1_000451_03.jpg', 'Zoë/\\u202egpj.exe')
"""

import re

__all__ = ["printable"]

# C0 and C1 controls and DEL; line and paragraph separators; the bidirectional marks, embeddings,
# overrides and isolates; lone surrogates (undecodable bytes of a file name, which cannot be encoded).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def printable(text: str) -> str:
    r"""``text`` with every control character written as its Python escape (``\n``, ``\x1b``...)."""
    return _UNSAFE.sub(lambda match: match[0].encode("unicode_escape").decode("ascii"), text)
