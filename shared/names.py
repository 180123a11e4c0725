"""Names derived from a provider account: Prefect limit names and artifact keys."""

from __future__ import annotations

import re


def slug(text: str) -> str:
    """Lowercase letters, digits and dashes only (what Prefect artifact keys accept)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def global_limit_name(provider: str, account: str, lane: str | None = None) -> str:
    """The Prefect global concurrency limit that carries one provider account's cap, or the
    cap of one `lane` of its requests (MailerLite's imports) when the provider has another."""
    parts = [provider, account] if lane is None else [provider, account, lane]
    return f"syncflows-{slug('-'.join(parts))}"


def artifact_key(provider: str, account: str, what: str) -> str:
    """A stable artifact key, so the UI keeps one history per provider account."""
    return slug(f"{provider}-{account}-{what}")
