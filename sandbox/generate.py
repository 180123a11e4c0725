"""Deterministic fake data for sandboxes: the same seed gives the same records, fast.

Each column is drawn in bulk (`random.choices`, list comprehensions over bound methods), so
300,000 people take about a second. Emails are unique (they carry the record id) and use
reserved domains (RFC 2606 / RFC 6761), so nothing generated can reach a real mailbox; phone
numbers are unique too and sit in the fictional +1 555 range.
"""

from __future__ import annotations

import random
import unicodedata
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import NamedTuple, TypeVar

T = TypeVar("T")

FIRST_NAMES = (
    "Emma", "Liam", "Olivia", "Noah", "Ava", "Lucas", "Sophie", "Daan", "Mila", "Sem",
    "Julia", "Finn", "Zoë", "Levi", "Anna", "Jesse", "Sara", "Milan", "Lotte", "Thijs",
    "Chloé", "José", "Amélie", "Jürgen", "Søren", "Ines", "Mateo", "Aisha", "Yusuf", "Mei",
    "Hiroshi", "Priya", "Arjun", "Fatima", "Omar", "Elena", "Luca", "Giulia", "Mateus", "Ana",
    "James", "Mary", "Robert", "Linda", "Michael", "Sarah", "David", "Karen", "Daniel", "Nancy",
    "Kwame", "Ngozi", "Olga", "Dmitri", "Agnieszka", "Piotr", "Björn", "Astrid", "Niamh", "Seán",
)  # fmt: skip
LAST_NAMES = (
    "de Jong", "Jansen", "de Vries", "van den Berg", "Bakker", "Visser", "Smit", "Meijer",
    "Mulder", "de Boer", "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller",
    "Davis", "Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Martin", "Bernard", "Dubois",
    "Lefèvre", "Rossi", "Russo", "Ferrari", "García", "Fernández", "López", "Martínez", "Silva",
    "Santos", "Kowalski", "Nowak", "Novák", "Ivanov", "Petrov", "Nielsen", "Hansen", "Andersson",
    "O'Brien", "Murphy", "Kelly", "Tanaka", "Suzuki", "Kim", "Lee", "Park", "Nguyen", "Tran",
    "Patel", "Sharma", "Singh", "Okafor", "Mensah", "Haddad",
)  # fmt: skip
DOMAINS = ("example.com", "example.org", "example.net", "mail.example", "shop.test")
COUNTRIES = ("NL", "BE", "DE", "FR", "GB", "US", "CA", "ES", "IT", "SE", "PL", "IE")


def ascii_slug(name: str) -> str:
    """`name` lower-cased, accents dropped, letters only: "Zoë O'Brien" → "zoeobrien"."""
    decomposed = unicodedata.normalize("NFKD", name)
    return "".join(c for c in decomposed if c.isascii() and c.isalnum()).lower()


_SLUGS = {name: ascii_slug(name) for name in (*FIRST_NAMES, *LAST_NAMES)}


class Person(NamedTuple):
    """A contact as most providers know one; sandboxes map it to their own record shape."""

    id: int
    email: str
    first_name: str
    last_name: str
    phone: str
    country: str
    created_at: datetime
    updated_at: datetime
    subscribed: bool


class Generator:
    """Seeded generators; every call draws from the one `random.Random`, so order matters."""

    def __init__(self, seed: int = 0) -> None:
        self.random = random.Random(seed)

    def choices(self, population: Sequence[T], count: int) -> list[T]:
        """`count` picks from `population`, with repetition."""
        return self.random.choices(population, k=count)

    def epoch_seconds(self, count: int, start: datetime, end: datetime) -> list[float]:
        """`count` uniform instants in [start, end), as epoch seconds."""
        low, span = start.timestamp(), (end - start).total_seconds()
        draw = self.random.random
        return [low + draw() * span for _ in range(count)]

    def people(
        self,
        count: int,
        *,
        start: datetime = datetime(2020, 1, 1, tzinfo=UTC),
        end: datetime = datetime(2026, 1, 1, tzinfo=UTC),
        first_id: int = 1,
        subscribed_share: float = 0.8,
    ) -> list[Person]:
        """`count` people with ids from `first_id`, created in [start, end), updated since."""
        firsts = self.choices(FIRST_NAMES, count)
        lasts = self.choices(LAST_NAMES, count)
        domains = self.choices(DOMAINS, count)
        countries = self.choices(COUNTRIES, count)
        created = self.epoch_seconds(count, start, end)
        draw, stop = self.random.random, end.timestamp()
        updated = [c + draw() * (stop - c) for c in created]
        subscribed = [draw() < subscribed_share for _ in range(count)]
        stamp, slug = datetime.fromtimestamp, _SLUGS
        return [
            Person(
                id_,
                f"{slug[first]}.{slug[last]}.{id_}@{domain}",
                first,
                last,
                f"+1555{id_:07d}",
                country,
                stamp(made, UTC),
                stamp(changed, UTC),
                consent,
            )
            for id_, first, last, domain, country, made, changed, consent in zip(
                range(first_id, first_id + count),
                firsts,
                lasts,
                domains,
                countries,
                created,
                updated,
                subscribed,
                strict=True,
            )
        ]
