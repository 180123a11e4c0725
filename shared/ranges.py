"""Splitting an id space into ranges that parallel keyset walks read side by side."""

from __future__ import annotations


def id_ranges(top: int, parts: int, page_size: int) -> list[tuple[int, int | None]]:
    """`parts` ranges `(after, through)` covering ids 1…`top`: `after < id ≤ through`.

    Providers hand out ids one by one, so equal id spans hold about equal numbers of records.
    Inner bounds fall on whole pages of ids, so only the last range ends on a short page: dense
    ids take ceil(records / page_size) pages in all, as one unsplit walk would. The last range
    is open (`through` None), so records created during the walk are read too.
    """
    if top <= 0:
        return [(0, None)]
    parts = max(1, parts)
    inner = sorted({round(top * i / parts / page_size) * page_size for i in range(1, parts)})
    bounds = [0, *(b for b in inner if 0 < b < top)]
    return list(zip(bounds, [*bounds[1:], None], strict=True))
