"""Line breaking for mixed Chinese and English text (the printed ticket, the kiosk's screen).

Chinese breaks between any two characters, English only at spaces; closing punctuation never
starts a line and opening brackets never end one (the usual 避头尾 rules); and a last line
that would hold one Chinese character alone takes the character before it along.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

# Never at the start of a line (closing punctuation, Chinese and ASCII).
NO_LINE_START: Final = frozenset("，。、；：？！）》」』】〕”’·…,.;:?!)]}%")
# Never at the end of a line (opening brackets and quotes).
NO_LINE_END: Final = frozenset("（《「『【〔“‘([{")


def units(text: str) -> list[str]:
    """Split into breakable units: ASCII words, single spaces, single non-ASCII characters."""
    tokens: list[str] = []
    word = ""
    for ch in text:
        if ch != " " and ord(ch) < 0x80:
            word += ch
            continue
        if word:
            tokens.append(word)
            word = ""
        tokens.append(ch)
    if word:
        tokens.append(word)
    return tokens


def _alone(body: str) -> bool:
    """Whether a line's text is one Chinese character (perhaps with closing punctuation)."""
    if not body or ord(body[0]) < 0x80 or body[0] in NO_LINE_START:
        return False
    return len(body) == 1 or (len(body) == 2 and body[1] in NO_LINE_START)


def mend_widow(lines: list[str], fits: Callable[[str], bool]) -> list[str]:
    """Take the previous line's last character down to a last line that holds one alone.

    ``lines`` as wrapped (a continuation indent of spaces is kept); ``fits`` says whether a
    line fits the width. Lines are left as they are when the previous line is short, ends in
    something that cannot start a line, or the mended line would not fit.
    """
    if len(lines) < 2:
        return lines
    last, previous = lines[-1], lines[-2].rstrip()
    body = last.lstrip(" ")
    if not _alone(body) or len(previous.strip()) < 3:
        return lines
    moved = previous[-1]
    if ord(moved) < 0x80 or moved in NO_LINE_START:
        return lines
    mended = last[: len(last) - len(body)] + moved + body
    if not fits(mended):
        return lines
    return [*lines[:-2], previous[:-1].rstrip(), mended]
