"""Fresh tensor and node names."""

from __future__ import annotations


def fresh_name(hint: str, taken: set[str]) -> str:
    """``hint``, or ``hint_2``, ``hint_3``, ... whichever is free first; the result is reserved."""
    name, index = hint, 1
    while name in taken:
        index += 1
        name = f"{hint}_{index}"
    taken.add(name)
    return name
