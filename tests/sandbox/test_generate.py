"""Generated records: the same seed gives the same records, at the volumes benches need."""

from __future__ import annotations

from datetime import UTC, datetime

from sandbox.generate import Generator, ascii_slug

COUNT = 300_000
START, END = datetime(2021, 1, 1, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC)


def test_300k_people_are_the_same_for_a_seed_and_unique_and_well_formed() -> None:
    people = Generator(seed=7).people(COUNT, start=START, end=END)
    assert people == Generator(seed=7).people(COUNT, start=START, end=END)
    assert people[:1000] != Generator(seed=8).people(1000, start=START, end=END)

    assert [p.id for p in people[:3]] == [1, 2, 3]
    assert people[-1].id == COUNT
    assert len({p.email for p in people}) == COUNT
    assert len({p.phone for p in people}) == COUNT
    assert all(p.email.isascii() and p.email.count("@") == 1 for p in people)
    assert all(START <= p.created_at <= p.updated_at <= END for p in people)
    assert 0.75 < sum(p.subscribed for p in people) / COUNT < 0.85


def test_ids_continue_from_first_id_for_appending_records() -> None:
    more = Generator(seed=1).people(3, first_id=501)
    assert [p.id for p in more] == [501, 502, 503]
    assert more[0].email.split("@")[0].endswith(".501")


def test_names_become_plain_ascii_email_parts() -> None:
    assert ascii_slug("Zoë") == "zoe"
    assert ascii_slug("O'Brien") == "obrien"
    assert ascii_slug("van den Berg") == "vandenberg"
