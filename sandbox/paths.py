"""Scoping sandbox rules (limits, faults) to parts of an API by path prefix."""

from __future__ import annotations


def under(path: str, prefix: str) -> bool:
    """Whether `path` is `prefix` or below it, by whole segments (`/a/b` is not under `/a/bc`)."""
    prefix = prefix.rstrip("/")
    return path == prefix or path.startswith(prefix + "/") or not prefix


def in_scope(path: str, paths: tuple[str, ...], exclude: tuple[str, ...]) -> bool:
    """Under any of `paths` (all paths when empty) and under none of `exclude`."""
    if paths and not any(under(path, p) for p in paths):
        return False
    return not any(under(path, p) for p in exclude)
