"""Did-you-mean for unknown model ids, cheap at any registry size.

:func:`difflib.get_close_matches` compares the reference with every candidate, so suggesting
among all ids for every unknown reference grows as ids x references: a 5,000-model file with
3,000 mistyped fallbacks took minutes to validate. Here the work is bounded three ways:

- ids that differ only in case or separators (``GPT_4o`` for ``gpt-4o``) are found by one lookup;
- while the registry is small every id is a candidate; beyond that only the ids nearest the
  reference in sorted order, and nearest it sorted by their ends (the ids sharing the longest
  start with it, and the longest ending: a typo rarely touches both ends), a bounded number of each;
- only the first ``limit`` distinct unknown references are compared at all; the rest are counted,
  so the report can say how many went without a suggestion.
"""

from __future__ import annotations

import bisect
import difflib
from collections.abc import Iterable

__all__ = ["IdSuggester"]

SUGGESTED = 20
"""Distinct unknown references that get a difflib suggestion; a list of typos longer than this is a generated
file, and its first few suggestions show the pattern."""
_ALL_IDS = 500  # up to this many ids, every id is a candidate
_NEAR = 50  # beyond it: this many ids on either side of the reference in each sorted order


def _normal(text: str) -> str:
    return "".join(c for c in text.casefold() if c not in "-_. /:")


class IdSuggester:
    """Suggests the closest known id for an unknown one; see the module docstring for what it costs."""

    def __init__(self, ids: Iterable[str], *, limit: int = SUGGESTED) -> None:
        self._ids = list(dict.fromkeys(ids))
        self._normal: dict[str, str] = {}
        for ident in self._ids:
            self._normal.setdefault(_normal(ident), ident)
        large = len(self._ids) > _ALL_IDS
        self._by_start = sorted(self._ids) if large else []
        self._by_end = sorted(ident[::-1] for ident in self._ids) if large else []  # each id written backwards
        self._left = limit
        self._memo: dict[str, str | None] = {}
        self.declined = 0
        """Distinct references left without a comparison because ``limit`` were compared already."""

    def suggest(self, ref: str) -> str | None:
        """The known id ``ref`` was probably meant to be, or None (none is close, or the limit is spent)."""
        if ref in self._memo:
            return self._memo[ref]
        close = self._normal.get(_normal(ref))
        if close is None and self._left > 0:
            self._left -= 1
            found = difflib.get_close_matches(ref, self._candidates(ref), n=1)
            close = found[0] if found else None
        elif close is None:
            self.declined += 1
        self._memo[ref] = close
        return close

    def _candidates(self, ref: str) -> list[str]:
        if len(self._ids) <= _ALL_IDS:
            return self._ids
        starts = _near(self._by_start, ref)
        ends = [ident[::-1] for ident in _near(self._by_end, ref[::-1])]
        return list(dict.fromkeys([*starts, *ends]))


def _near(ordered: list[str], key: str) -> list[str]:
    """The entries around where ``key`` would sit in ``ordered``: those sharing the longest start with it."""
    at = bisect.bisect_left(ordered, key)
    return ordered[max(0, at - _NEAR) : at + _NEAR]
