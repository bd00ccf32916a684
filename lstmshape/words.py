"""Words for messages: grammatical counts and collapsed listings, shared by every message."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")

#: A listing longer than this shows its first and last few items and the count.
LISTING_LIMIT = 12
LISTING_ENDS = 3


def plural(count: int, noun: str) -> str:
    """``"1 timestep"``, ``"2 timesteps"``: counts a newcomer reads.

    Example:
        >>> plural(1, "real timestep"), plural(3, "sample"), plural(1200, "row")
        ('1 real timestep', '3 samples', '1,200 rows')
    """
    return f"{count:,} {noun}" + ("" if count == 1 else "s")


def collapsed(items: Sequence[str], limit: int = LISTING_LIMIT, ends: int = LISTING_ENDS) -> str:
    """The items joined by ", ", the middle of a long listing replaced by how many were left
    out (a container of 270 sequences is not 270 names on one line).

    Example:
        >>> collapsed([f"arr_{i}" for i in range(270)])
        'arr_0, arr_1, arr_2, ... (264 more) ..., arr_267, arr_268, arr_269 (270 in all)'
        >>> collapsed(["x", "y"])
        'x, y'
    """
    if len(items) <= limit:
        return ", ".join(items)
    return (", ".join(items[:ends]) + f", ... ({len(items) - 2 * ends:,} more) ..., "
            + ", ".join(items[-ends:]) + f" ({len(items):,} in all)")


def shown_rows(items: Sequence[T], limit: int = LISTING_LIMIT,
               ends: int = LISTING_ENDS) -> tuple[list[T], int, list[T]]:
    """A long listing's first and last ``ends`` items and how many lie between them (0 and all
    the items, nothing after, when it is short enough to show whole).

    Example:
        >>> first, hidden, last = shown_rows(list(range(270)))
        >>> first, hidden, last
        ([0, 1, 2], 264, [267, 268, 269])
    """
    if len(items) <= limit:
        return list(items), 0, []
    return list(items[:ends]), len(items) - 2 * ends, list(items[-ends:])
