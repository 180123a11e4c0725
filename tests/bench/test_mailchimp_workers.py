"""The scale-out scenario's correctness check: it passes a correct state and names every way a
drain through workers can go wrong (a missing or stale member, a stranger, the account's cap
exceeded, events left behind, a run that did not complete)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bench.mailchimp_workers import check, expected_members, owner_ids
from flows.mailchimp.tables import AccountOwner
from sandbox.app_contacts import seed_contacts
from sandbox.mailchimp import subscriber_hash
from shared.db import dispose_engine, ensure_schema, session_scope


def _member(email: str, first: str = "Ann", tags: tuple[str, ...] = ("lead",)) -> dict[str, Any]:
    return {
        "email": email,
        "status": "subscribed",
        "merge_fields": {"FNAME": first, "LNAME": "Lee", "PHONE": ""},
        "tags": list(tags),
    }


def _state() -> dict[str, dict[str, dict[str, Any]]]:
    emails = {"mc00": ["a@x.example", "b@x.example"], "mc01": ["c@x.example"]}
    return {
        owner: {subscriber_hash(email): _member(email) for email in found}
        for owner, found in emails.items()
    }


def test_the_state_a_correct_drain_leaves_is_correct() -> None:
    assert check(_state(), _state(), {"mc00": 10, "mc01": 7}, 0, ["COMPLETED"] * 2) == []


@pytest.mark.parametrize(
    ("spoil", "finding"),
    [
        (lambda s: s["mc00"].pop(subscriber_hash("b@x.example")), "1 contacts are not members"),
        (lambda s: s["mc01"].update({"f": _member("z@x.example")}), "1 members no contact"),
        (
            lambda s: s["mc00"][subscriber_hash("a@x.example")].update(status="archived"),
            "a@x.example is archived",
        ),
        (
            lambda s: s["mc00"][subscriber_hash("a@x.example")].update(
                merge_fields={"FNAME": "Stale", "LNAME": "Lee", "PHONE": ""}
            ),
            "'Stale'",
        ),
        (
            lambda s: s["mc01"][subscriber_hash("c@x.example")].update(tags=[]),
            "c@x.example is tagged []",
        ),
        (lambda s: s.pop("mc01"), "mc01: 1 contacts are not members"),
    ],
)
def test_a_wrong_audience_is_named(spoil: Any, finding: str) -> None:
    audiences = _state()
    spoil(audiences)
    problems = check(_state(), audiences, {"mc00": 10}, 0, ["COMPLETED"])
    assert len(problems) == 1
    assert finding in problems[0]


def test_a_broken_cap_leftover_events_and_a_failed_run_are_each_named() -> None:
    problems = check(_state(), _state(), {"mc00": 11, "mc01": 10}, 3, ["COMPLETED", "CRASHED"])
    assert problems == [
        "more than 10 requests in flight at once: {'mc00': 11}",
        "3 events left in the outbox",
        "runs ended ['COMPLETED', 'CRASHED'], not all COMPLETED",
    ]
    assert check(_state(), _state(), {}, 0, []) == ["runs ended [], not all COMPLETED"]


def test_expected_members_are_the_live_contacts_with_an_email(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/app.db"
    ensure_schema(url)
    for owner in owner_ids(2):
        with session_scope(url) as session:
            session.add(AccountOwner(id=owner, name=owner, created_at=datetime.now(UTC)))
        seed_contacts(url, owner, 60)
    expected = expected_members(url)
    dispose_engine(url)
    assert set(expected) == {"mc00", "mc01"}
    # A few generated contacts have no email (sandbox.app_contacts): not synced, not expected.
    assert 50 < len(expected["mc00"]) < 60
    member = next(iter(expected["mc01"].values()))
    assert member["email"].startswith("mc01.")
    assert set(member["merge_fields"]) == {"FNAME", "LNAME", "PHONE"}
    # What the scenario itself found correct is correct here too.
    audiences = {
        owner: {key: {**m, "status": "subscribed"} for key, m in found.items()}
        for owner, found in expected.items()
    }
    assert check(expected, audiences, {"mc00": 10, "mc01": 10}, 0, ["COMPLETED"]) == []
