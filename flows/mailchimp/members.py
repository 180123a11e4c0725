"""What a contact should look like in Mailchimp, and what a push remembers of it.

The seed's field map: first_name → FNAME, last_name → LNAME, email → email_address, phone →
PHONE, tags → tags. A value the application cleared is sent as "" so Mailchimp clears it too
(the application wins, always). `push_state.pushed` keeps the email and tags last sent: a tag
removed in the application since then is made inactive, and a changed email archives the member
of the old one (its subscriber hash is the old email's, push §3.2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flows.mailchimp.tables import Contact
from shared.runs import payload_hash

PROVIDER = "mailchimp"
OPERATION = "push"
MERGE_FIELDS = {"FNAME": "first_name", "LNAME": "last_name", "PHONE": "phone"}
# How to create one that an audience lacks: (name, type) (push §3.10).
FIELD_DEFINITIONS = {
    "FNAME": ("First Name", "text"),
    "LNAME": ("Last Name", "text"),
    "PHONE": ("Phone Number", "phone"),
}


def record_key(contact_id: str) -> str:
    return f"contact:{contact_id}"


def contact_id_of(key: str) -> str:
    return key.removeprefix("contact:")


@dataclass(frozen=True)
class Wanted:
    """A contact as its Mailchimp member should be."""

    contact_id: str
    email: str
    merge_fields: dict[str, str]
    tags: tuple[str, ...]

    @property
    def digest(self) -> str:
        return payload_hash(
            {"email": self.email.lower(), "merge_fields": self.merge_fields, "tags": self.tags}
        )

    def pushed(self) -> dict[str, Any]:
        """What `push_state.pushed` keeps of it."""
        return {"email": self.email, "tags": list(self.tags)}


def wanted(contact: Contact) -> Wanted | None:
    """The member a contact should be; None without an email (the seed: not synced)."""
    email = (contact.email or "").strip()
    if not email:
        return None
    fields = {tag: str(getattr(contact, name) or "").strip() for tag, name in MERGE_FIELDS.items()}
    tags = tuple(sorted({str(t).strip() for t in contact.tags or [] if str(t).strip()}))
    return Wanted(contact.id, email, fields, tags)


@dataclass(frozen=True)
class Pushed:
    """What was last sent for a contact (from `push_state`)."""

    digest: str
    email: str | None
    tags: tuple[str, ...]


def pushed_from(digest: str, pushed: dict[str, Any] | None) -> Pushed:
    pushed = pushed or {}
    email = pushed.get("email")
    return Pushed(
        digest, email if isinstance(email, str) else None, tuple(pushed.get("tags") or ())
    )


def tag_changes(
    want: tuple[str, ...], before: tuple[str, ...], present: set[str] | None
) -> tuple[list[str], list[str]]:
    """(tags to make active, tags to make inactive).

    `present`: the member's tags in Mailchimp when known (None: unknown, e.g. more than the 50
    a member answer lists). Active: the application's tags not there yet. Inactive: tags the
    application had when it last pushed and has dropped since; tags only ever set in Mailchimp
    are never named, so they stay (push §3.4 is additive).
    """
    removed = [t for t in before if t not in want]
    if present is None:
        return list(want), removed
    return [t for t in want if t not in present], [t for t in removed if t in present]


def same_email(a: str | None, b: str | None) -> bool:
    return (a or "").lower() == (b or "").lower()
