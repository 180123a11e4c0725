"""The records behind the ActiveCampaign sandbox: one account, stored by column, seeded.

Contacts, deals and the two custom-field value tables are kept as parallel columns (`array`s
of ints, lists of mostly shared strings), a record's id being its index + 1, so the seed's
scale (82,000 contacts, 75,000 deals, ~470,000 field values) takes tens of MB, not hundreds:
benchmarks run the sandbox inside the flow's process. JSON is built per page elsewhere
(`sandbox.activecampaign`); here are the records, the queries the list endpoints answer
(cached until the next mutation, so paging one query costs one scan) and the mutations.

Times are whole epoch seconds, shown in the account's time zone (`ACCOUNT_TZ`).
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Collection, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from sandbox.generate import LAST_NAMES, Generator, ascii_slug

T = TypeVar("T")

# Every documented example and recorded response is US Central: -05:00 / -06:00 (pull §1.4).
ACCOUNT_TZ = ZoneInfo("America/Chicago")
START = datetime(2019, 1, 1, tzinfo=UTC)
END = datetime(2026, 1, 1, tzinfo=UTC)  # fixed, so a seed gives the same records every day
LIVE, LEGACY, TASK_ZERO, ZERO_EDATE = 1, 2, 4, 8  # bits of a record's flags
CURRENCIES = ("usd", "eur", "gbp")
CHUNK = 10_000  # people drawn per call: bounds the transient peak of datetimes and tuples
_SPAN = END.timestamp() - START.timestamp()


@dataclass(frozen=True)
class AccountShape:
    """How many of each record a generated account holds; values per record are means."""

    contacts: int = 2_000
    deals: int = 1_500
    contact_fields: int = 8
    values_per_contact: int = 3
    deal_fields: int = 6
    values_per_deal: int = 3
    pipelines: int = 3
    stages_per_pipeline: int = 5
    users: int = 5
    # The last N pipelines are hidden from the API user: their deals come back as stubs.
    restricted_pipelines: int = 1
    restricted_share: float = 0.02  # of deals, so stubs exist but stay few


DEFAULT_SHAPE = AccountShape()  # starts in well under a second
# The original sync's account (shared/seeds/002): 82k contacts with ~8 custom fields and ~3
# values each, 75k deals with ~6 custom fields, 12 pipelines, 60 stages, 40 owners.
SEED_SHAPE = AccountShape(contacts=82_000, deals=75_000, pipelines=12, users=40)

CONTACT_FIELDS = (  # (title, AC type, options); cycled with a number when more are asked for
    ("Company", "text", ()),
    ("Industry", "dropdown", ("Retail", "Software", "Finance", "Health", "Education")),
    ("Company Size", "radio", ("1-10", "11-50", "51-200", "201-1000", "1000+")),
    ("Interests", "checkbox", ("Newsletter", "Webinars", "Events", "Discounts")),
    ("Birthday", "date", ()),
    ("Last Purchase", "datetime", ()),
    ("Notes", "textarea", ()),
    ("Channels", "listbox", ("Email", "SMS", "Phone", "WhatsApp")),
)
DEAL_FIELDS = (
    ("Deal Source", "dropdown", ("Inbound", "Outbound", "Referral", "Partner")),
    ("Contract Months", "number", ()),
    ("Annual Value", "currency", ()),
    ("Close Reason", "text", ()),
    ("Renewal Date", "date", ()),
    ("Products", "multiselect", ("Starter", "Pro", "Enterprise", "Support", "Training")),
)
PIPELINES = (
    "Sales", "Enterprise", "Partnerships", "Renewals", "Onboarding", "Upsell",
    "Wholesale", "Events", "EMEA Sales", "APAC Sales", "Public Sector", "Internal",
)  # fmt: skip
STAGES = ("To Contact", "In Contact", "Qualified", "Proposal Sent", "Negotiation", "Closing")
COLORS = ("32B0FC", "C481DF", "00ECC5", "18D499", "E6CE4B", "696969")
ADJECTIVES = ("Able", "Bold", "Calm", "Eager", "Grand", "Keen", "Lucky", "Noble", "Quick", "Wise")
ANIMALS = ("Hyena", "Otter", "Falcon", "Badger", "Lynx", "Heron", "Bison", "Koala", "Raven", "Yak")
PHRASES = (
    "Prefers morning calls.", "Met at the spring fair.", "Asked for a quote.",
    "Follow up after the holidays.", "Needs approval from finance.", "Long-time customer.",
)  # fmt: skip


def iso(ts: int) -> str:
    """Epoch seconds as AC shows `cdate`/`udate`: ISO 8601 with the account's offset."""
    return datetime.fromtimestamp(ts, ACCOUNT_TZ).isoformat()


def wall(ts: int) -> str:
    """Epoch seconds as `YYYY-MM-DD HH:MM:SS` account wall-clock time, no offset.

    AC's offset-less timestamps (`*_utc_timestamp` despite the name, deal custom field
    `createdTimestamp`) carry the account's local time in the recorded responses (pull §1.4).
    """
    return datetime.fromtimestamp(ts, ACCOUNT_TZ).strftime("%Y-%m-%d %H:%M:%S")


def parse_when(text: str) -> int | None:
    """A `filters[...]` date as epoch seconds (floored), None when it cannot be read.

    Takes what peers send (pull §1.3): `YYYY-MM-DD`, ISO datetimes with `Z`, an offset or
    fractions; a value without an offset is read in the account's time zone.
    """
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=ACCOUNT_TZ)
    return math.floor(when.timestamp())


@dataclass(frozen=True, slots=True)
class Field:
    """A contact custom field (`/fields`) or a deal custom field (`/dealCustomFieldMeta`)."""

    id: int
    title: str
    type: str
    options: tuple[str, ...]
    created: int
    updated: int


@dataclass(frozen=True, slots=True)
class Pipeline:
    """A deal group; `stages` are its stage ids in order."""

    id: int
    title: str
    currency: str
    created: int
    updated: int
    stages: tuple[int, ...]
    restricted: bool


@dataclass(frozen=True, slots=True)
class Stage:
    """A deal stage; some have no `cdate`/`udate` at all (the `/dealGroups` example)."""

    id: int
    pipeline: int
    title: str
    order: int
    color: str
    created: int | None
    updated: int | None


@dataclass(frozen=True, slots=True)
class User:
    """An account user; deals name one as `owner`."""

    id: int
    username: str
    first_name: str
    last_name: str
    email: str


class ValueTable:
    """Custom-field values of many records (contacts or deals); row id = index + 1.

    Generated rows sit together per record (`_first`, `_count`); rows added later are listed
    in `_extra`. A deleted row keeps its place with `owner` 0, so row ids never shift.
    """

    def __init__(self) -> None:
        self.owner = array("i")
        self.field = array("i")
        self.value: list[str] = []
        self.created = array("q")
        self.updated = array("q")
        self._first = array("i")  # per record index: its first generated row, -1 when none
        self._count = bytearray()
        self._extra: dict[int, list[int]] = {}

    def __len__(self) -> int:
        return len(self.owner)

    def append(self, owner: int, field_id: int, value: str, created: int, updated: int) -> int:
        """Add a row; the caller registers it with its record (`start`/`_extra`)."""
        self.owner.append(owner)
        self.field.append(field_id)
        self.value.append(value)
        self.created.append(created)
        self.updated.append(updated)
        return len(self.owner) - 1

    def start(self, owner: int, first: int) -> None:
        """Record `owner`'s generated rows: `first` up to the current end."""
        self._grow(owner)
        if len(self.owner) > first:
            self._first[owner - 1], self._count[owner - 1] = first, len(self.owner) - first

    def _grow(self, owner: int) -> None:
        missing = owner - len(self._first)
        if missing > 0:
            self._first.extend([-1] * missing)
            self._count.extend(bytes(missing))

    def rows_of(self, owner: int) -> list[int]:
        """Row indices of `owner`'s live values, generated ones first."""
        rows: list[int] = []
        if owner <= len(self._first) and (first := self._first[owner - 1]) >= 0:
            rows.extend(range(first, first + self._count[owner - 1]))
        rows.extend(self._extra.get(owner, ()))
        return [r for r in rows if self.owner[r] == owner]

    def put(self, owner: int, field_id: int, value: str | None, now: int) -> None:
        """Set (None: remove) `owner`'s value of `field_id`, stamped `now`."""
        row = next((r for r in self.rows_of(owner) if self.field[r] == field_id), None)
        if value is None:
            if row is not None:
                self.owner[row] = 0
        elif row is not None:
            self.value[row], self.updated[row] = value, now
        else:
            self._grow(owner)
            self._extra.setdefault(owner, []).append(self.append(owner, field_id, value, now, now))

    def drop(self, owner: int) -> None:
        """Remove all of `owner`'s values (its record was deleted)."""
        for row in self.rows_of(owner):
            self.owner[row] = 0


@dataclass
class Contacts:
    """Contact columns; id = index + 1."""

    email: list[str] = field(default_factory=list)
    first: list[str] = field(default_factory=list)
    last: list[str] = field(default_factory=list)
    phone: list[str] = field(default_factory=list)
    created: array[int] = field(default_factory=lambda: array("q"))
    updated: array[int] = field(default_factory=lambda: array("q"))
    flags: bytearray = field(default_factory=bytearray)


@dataclass
class Deals:
    """Deal columns; id = index + 1. `contact` 0 is no contact; `win` 255 is null."""

    title: list[str] = field(default_factory=list)
    description: list[str] = field(default_factory=list)
    value: array[int] = field(default_factory=lambda: array("q"))  # cents
    currency: bytearray = field(default_factory=bytearray)  # index into CURRENCIES
    status: bytearray = field(default_factory=bytearray)
    stage: array[int] = field(default_factory=lambda: array("i"))
    owner: array[int] = field(default_factory=lambda: array("i"))
    contact: array[int] = field(default_factory=lambda: array("i"))
    created: array[int] = field(default_factory=lambda: array("q"))
    updated: array[int] = field(default_factory=lambda: array("q"))  # mdate
    win: bytearray = field(default_factory=bytearray)
    flags: bytearray = field(default_factory=bytearray)


@dataclass(frozen=True)
class DateFilters:
    """`filters[created_after|created_before|updated_after|updated_before]`, epoch seconds.

    After: `>=`, before: `<` — the deals documentation's words ("greater than or equal",
    "less than"); the contacts page does not say, so contacts follow the same rule.
    """

    created_after: int | None = None
    created_before: int | None = None
    updated_after: int | None = None
    updated_before: int | None = None

    def select(self, rows: list[int], created: array[int], updated: array[int]) -> list[int]:
        """The `rows` (indices) inside these dates."""
        if self.created_after is not None:
            rows = [i for i in rows if created[i] >= self.created_after]
        if self.created_before is not None:
            rows = [i for i in rows if created[i] < self.created_before]
        if self.updated_after is not None:
            rows = [i for i in rows if updated[i] >= self.updated_after]
        if self.updated_before is not None:
            rows = [i for i in rows if updated[i] < self.updated_before]
        return rows


Orders = tuple[tuple[str, bool], ...]  # (field, descending), most significant first


class Account:
    """One ActiveCampaign account's records, queries and mutations (ids are 1-based)."""

    def __init__(self) -> None:
        self.fields: list[Field] = []
        self.deal_fields: list[Field] = []
        self.pipelines: list[Pipeline] = []
        self.stages: list[Stage] = []
        self.users: list[User] = []
        self.contacts = Contacts()
        self.deals = Deals()
        self.field_values = ValueTable()
        self.deal_values = ValueTable()
        self.version = 0  # bumped by every mutation; cached query answers carry it
        self._cache: dict[Hashable, tuple[int, Any]] = {}

    # ---- lookups -------------------------------------------------------------------------

    def contact_index(self, contact_id: int) -> int:
        """The column index of a live contact; KeyError when there is none."""
        index = contact_id - 1
        if not 0 <= index < len(self.contacts.flags) or not self.contacts.flags[index] & LIVE:
            raise KeyError(f"no contact {contact_id}")
        return index

    def deal_index(self, deal_id: int) -> int:
        """The column index of a live deal; KeyError when there is none."""
        index = deal_id - 1
        if not 0 <= index < len(self.deals.flags) or not self.deals.flags[index] & LIVE:
            raise KeyError(f"no deal {deal_id}")
        return index

    def stage(self, stage_id: int) -> Stage:
        """Stage by id (ids are 1…n in order)."""
        return self.stages[stage_id - 1]

    def pipeline_of(self, deal_index: int) -> Pipeline:
        """The pipeline a deal's stage belongs to."""
        return self.pipelines[self.stage(self.deals.stage[deal_index]).pipeline - 1]

    def restricted(self, deal_index: int) -> bool:
        """Whether the API user sees only a stub of this deal (pull §1.6)."""
        return self.pipeline_of(deal_index).restricted

    # ---- queries (cached per version) -----------------------------------------------------

    def _cached(self, key: Hashable, compute: Callable[[], T]) -> T:
        hit = self._cache.get(key)
        if hit is not None and hit[0] == self.version:
            answer: T = hit[1]
            return answer
        answer = compute()
        self._cache[key] = (self.version, answer)
        if len(self._cache) > 8:  # a few walks at once; each entry is at most a few MB
            del self._cache[next(iter(self._cache))]
        return answer

    def contact_rows(
        self,
        dates: DateFilters,
        orders: Orders,
        id_greater: int | None = None,
        id_less: int | None = None,
        email: str | None = None,
    ) -> array[int]:
        """Indices of the contacts matching, in order (default: email, the documented example).

        With `orders[id]=ASC` alone the id bounds are applied by bisecting the cached answer,
        so a keyset walk costs one scan, not one per page.
        """
        if orders == (("id", False),):
            rows = self._cached(
                ("contacts", dates, orders, email),
                lambda: self._contact_rows(dates, orders, None, None, email),
            )
            lo = 0 if id_greater is None else bisect_right(rows, id_greater - 1)
            hi = len(rows) if id_less is None else bisect_left(rows, id_less - 1)
            return rows[lo:hi]
        return self._cached(
            ("contacts", dates, orders, id_greater, id_less, email),
            lambda: self._contact_rows(dates, orders, id_greater, id_less, email),
        )

    def _contact_rows(
        self,
        dates: DateFilters,
        orders: Orders,
        id_greater: int | None,
        id_less: int | None,
        email: str | None,
    ) -> array[int]:
        c = self.contacts
        lo = max(id_greater or 0, 0)  # id > g ⇔ index ≥ g
        hi = len(c.flags) if id_less is None else min(max(id_less - 1, 0), len(c.flags))
        flags = c.flags
        rows = dates.select([i for i in range(lo, hi) if flags[i] & LIVE], c.created, c.updated)
        if email is not None:
            rows = [i for i in rows if c.email[i].lower() == email.lower()]
        keys: dict[str, Callable[[int], Any]] = {
            "cdate": c.created.__getitem__,
            "email": lambda i: c.email[i].lower(),
            "first_name": lambda i: c.first[i].lower(),
            "last_name": lambda i: c.last[i].lower(),
            "name": lambda i: f"{c.first[i]} {c.last[i]}".lower(),
        }
        _sort(rows, orders or (("email", False),), keys)
        return array("i", rows)

    def deal_rows(self, dates: DateFilters, orders: Orders, **equals: int) -> DealMatch:
        """Indices of the deals matching (`equals`: group, stage, status, owner), in order."""
        key = ("deals", dates, orders, tuple(sorted(equals.items())))
        return self._cached(key, lambda: self._deal_rows(dates, orders, equals))

    def _deal_rows(
        self, dates: DateFilters, orders: Orders, equals: Mapping[str, int]
    ) -> DealMatch:
        d, c = self.deals, self.contacts
        rows = dates.select(
            [i for i, flags in enumerate(d.flags) if flags & LIVE], d.created, d.updated
        )
        stage_pipeline = [0, *(s.pipeline for s in self.stages)]
        columns: dict[str, Callable[[int], int]] = {
            "group": lambda i: stage_pipeline[d.stage[i]],
            "stage": d.stage.__getitem__,
            "status": d.status.__getitem__,
            "owner": d.owner.__getitem__,
        }
        for name, wanted in equals.items():
            rows = [i for i in rows if columns[name](i) == wanted]

        def contact_name(i: int) -> str:
            contact = d.contact[i]
            alive = 0 < contact <= len(c.flags) and c.flags[contact - 1] & LIVE
            return c.first[contact - 1].lower() if alive else ""

        keys: dict[str, Callable[[int], Any]] = {
            "title": lambda i: d.title[i].lower(),
            "value": d.value.__getitem__,
            "cdate": d.created.__getitem__,
            "contact_name": contact_name,
        }
        _sort(rows, orders, keys)
        hidden = {p.id for p in self.pipelines if p.restricted}
        currencies: dict[str, list[int]] = {}  # code → [count, value]
        for i in rows:
            if stage_pipeline[d.stage[i]] not in hidden:
                total = currencies.setdefault(CURRENCIES[d.currency[i]].upper(), [0, 0])
                total[0] += 1
                total[1] += d.value[i]
        return DealMatch(array("i", rows), {k: (n, v) for k, (n, v) in currencies.items()})

    def field_value_rows(self, field_id: int | None, value: str | None) -> array[int]:
        """Rows of `/fieldValues` (`filters[fieldid]`, `filters[val]`), by id."""
        table = self.field_values

        def compute() -> array[int]:
            rows = [r for r, owner in enumerate(table.owner) if owner]
            if field_id is not None:
                rows = [r for r in rows if table.field[r] == field_id]
            if value is not None:
                rows = [r for r in rows if table.value[r] == value]
            return array("i", rows)

        return self._cached(("fieldValues", field_id, value), compute)

    def deal_value_rows(self, deal_id: int | None) -> array[int]:
        """Rows of `/dealCustomFieldData` (`filters[dealId]`) the API user may see, by id."""
        table = self.deal_values

        def compute() -> array[int]:
            if deal_id is not None:
                try:
                    index = self.deal_index(deal_id)
                except KeyError:
                    return array("i")
                return array("i", [] if self.restricted(index) else table.rows_of(deal_id))
            hidden = {s.id for s in self.stages if self.pipelines[s.pipeline - 1].restricted}
            stage = self.deals.stage
            return array(
                "i",
                [r for r, deal in enumerate(table.owner) if deal and stage[deal - 1] not in hidden],
            )

        return self._cached(("dealCustomFieldData", deal_id), compute)

    # ---- mutations ------------------------------------------------------------------------

    def _field_ids(
        self, fields: list[Field], changes: Mapping[int | str, str | None] | None
    ) -> dict[int, str | None]:
        """`changes` keyed by field id (given by id or title); KeyError for an unknown one."""
        ids = {key: f.id for f in fields for key in (f.id, f.title)}
        unknown = [key for key in changes or () if key not in ids]
        if unknown:
            raise KeyError(f"no custom field {unknown[0]!r}")
        return {ids[key]: value for key, value in (changes or {}).items()}

    def update_contact(
        self,
        contact_id: int,
        now: int,
        changes: Mapping[str, Any],
        fields: Mapping[int | str, str | None] | None = None,
    ) -> None:
        """Apply `changes` (JSON names: email, firstName, lastName, phone) and field values."""
        index, values = self.contact_index(contact_id), self._field_ids(self.fields, fields)
        _check_names(changes, _CONTACT_COLUMNS, "contacts")
        for name, value in changes.items():
            getattr(self.contacts, _CONTACT_COLUMNS[name])[index] = str(value)
        for field_id, value in values.items():
            self.field_values.put(contact_id, field_id, value, now)
        self.contacts.updated[index] = now
        self.version += 1

    def create_contact(
        self, now: int, values: Mapping[str, Any], fields: Mapping[int | str, str | None] | None
    ) -> int:
        """Append a contact created `now`; its id."""
        _check_names(values, _CONTACT_COLUMNS, "contacts")
        self._field_ids(self.fields, fields)
        c = self.contacts
        for name in _CONTACT_COLUMNS.values():
            getattr(c, name).append("")
        c.created.append(now)
        c.updated.append(now)
        c.flags.append(LIVE)
        contact_id = len(c.flags)
        self.update_contact(contact_id, now, values, fields)
        return contact_id

    def delete_contact(self, contact_id: int) -> None:
        """Remove a contact and its field values; its deals keep naming it."""
        self.contacts.flags[self.contact_index(contact_id)] &= ~LIVE
        self.field_values.drop(contact_id)
        self.version += 1

    def update_deal(
        self,
        deal_id: int,
        now: int,
        changes: Mapping[str, Any],
        fields: Mapping[int | str, str | None] | None = None,
    ) -> None:
        """Apply `changes` (title, description, value in cents, currency, status, stage,
        owner, contact) and custom field values; `mdate` becomes `now`."""
        index, d = self.deal_index(deal_id), self.deals
        values = self._field_ids(self.deal_fields, fields)
        self._check_deal(changes)
        for name, value in changes.items():
            if name in ("title", "description"):
                getattr(d, name)[index] = str(value)
            elif name == "currency":
                d.currency[index] = CURRENCIES.index(str(value).lower())
            else:
                getattr(d, name)[index] = int(value or 0)
        for field_id, value in values.items():
            self.deal_values.put(deal_id, field_id, value, now)
        d.updated[index] = now
        self.version += 1

    def _check_deal(self, changes: Mapping[str, Any]) -> None:
        _check_names(changes, _DEAL_COLUMNS, "deals")
        bounds = {"stage": (1, len(self.stages)), "owner": (1, len(self.users)), "status": (0, 2)}
        for name, (low, high) in bounds.items():
            if name in changes and not low <= int(changes[name]) <= high:
                raise KeyError(f"no {name} {changes[name]!r}")
        if str(changes.get("currency", "usd")).lower() not in CURRENCIES:
            raise KeyError(f"no currency {changes['currency']!r}")

    def create_deal(
        self, now: int, values: Mapping[str, Any], fields: Mapping[int | str, str | None] | None
    ) -> int:
        """Append an open deal created `now` in the first pipeline's first stage; its id."""
        self._check_deal(values)
        self._field_ids(self.deal_fields, fields)
        d, first = self.deals, self.pipelines[0]
        d.title.append("")
        d.description.append("")
        d.value.append(0)
        d.currency.append(CURRENCIES.index(first.currency))
        d.status.append(0)
        d.stage.append(first.stages[0])
        d.owner.append(1)
        d.contact.append(0)
        d.created.append(now)
        d.updated.append(now)
        d.win.append(255)
        d.flags.append(LIVE)
        deal_id = len(d.flags)
        self.update_deal(deal_id, now, values, fields)
        return deal_id

    def delete_deal(self, deal_id: int) -> None:
        """Remove a deal and its custom field data."""
        self.deals.flags[self.deal_index(deal_id)] &= ~LIVE
        self.deal_values.drop(deal_id)
        self.version += 1

    # ---- what a consumer should end up storing --------------------------------------------

    def iter_contacts(self) -> Iterator[dict[str, Any]]:
        """Every live contact, enriched: custom field values keyed by field title."""
        c, table = self.contacts, self.field_values
        titles = {f.id: f.title for f in self.fields}
        for index, flags in enumerate(c.flags):
            if flags & LIVE:
                yield {
                    "id": index + 1,
                    "email": c.email[index],
                    "first_name": c.first[index],
                    "last_name": c.last[index],
                    "phone": c.phone[index],
                    "created_at": datetime.fromtimestamp(c.created[index], UTC),
                    "updated_at": datetime.fromtimestamp(c.updated[index], UTC),
                    "fields": {
                        titles[table.field[r]]: table.value[r] for r in table.rows_of(index + 1)
                    },
                }

    def iter_deals(self) -> Iterator[dict[str, Any]]:
        """Every live deal, enriched with pipeline, stage and owner names and custom fields
        keyed by label; a deal the API user cannot see is only `{id, title, status,
        disabled: True}`, all a stub tells (pull §1.6)."""
        d, table = self.deals, self.deal_values
        labels = {f.id: f.title for f in self.deal_fields}
        for index, flags in enumerate(d.flags):
            if not flags & LIVE:
                continue
            base = {"id": index + 1, "title": d.title[index], "status": d.status[index]}
            if self.restricted(index):
                yield {**base, "disabled": True}
                continue
            stage, owner = self.stage(d.stage[index]), self.users[d.owner[index] - 1]
            yield {
                **base,
                "value_cents": d.value[index],
                "currency": CURRENCIES[d.currency[index]],
                "pipeline_id": stage.pipeline,
                "pipeline": self.pipelines[stage.pipeline - 1].title,
                "stage_id": stage.id,
                "stage": stage.title,
                "owner_id": owner.id,
                "owner": f"{owner.first_name} {owner.last_name}",
                "contact_id": d.contact[index] or None,
                "created_at": datetime.fromtimestamp(d.created[index], UTC),
                "updated_at": datetime.fromtimestamp(d.updated[index], UTC),
                "fields": {
                    labels[table.field[r]]: table.value[r] for r in table.rows_of(index + 1)
                },
            }


@dataclass(frozen=True)
class DealMatch:
    """Deals matching a query, and per currency (upper case) the count and cents of the
    visible ones, for `meta.currencies`."""

    rows: array[int]
    currencies: dict[str, tuple[int, int]]


_CONTACT_COLUMNS = {"email": "email", "firstName": "first", "lastName": "last", "phone": "phone"}
_DEAL_COLUMNS = ("title", "description", "value", "currency", "status", "stage", "owner", "contact")


def _check_names(changes: Mapping[str, Any], known: Collection[str], kind: str) -> None:
    """KeyError unless every change names a column that can change."""
    for name in changes:
        if name not in known:
            raise KeyError(f"{kind} have no changeable {name!r}")


def _sort(rows: list[int], orders: Orders, keys: Mapping[str, Callable[[int], Any]]) -> None:
    """Sort `rows` (ascending indices) by `orders`, ties by id; unknown fields are ignored."""
    for name, descending in reversed(orders):
        if name == "id":
            rows.sort(reverse=descending)
        elif name in keys:
            rows.sort(key=keys[name], reverse=descending)  # stable: earlier orders win


# ---- generation ----------------------------------------------------------------------------


def generate(shape: AccountShape = DEFAULT_SHAPE, seed: int = 0) -> Account:
    """A deterministic account of `shape`: the same seed gives the same records."""
    gen = Generator(seed)
    account = Account()
    _generate_catalog(account, shape, gen)
    _generate_contacts(account, shape, gen)
    _generate_deals(account, shape, gen)
    return account


def _cycled(catalog: tuple[T, ...], index: int) -> tuple[T, int]:
    return catalog[index % len(catalog)], index // len(catalog)


def _numbered(title: str, lap: int) -> str:
    return title if lap == 0 else f"{title} {lap + 1}"


def _generate_catalog(account: Account, shape: AccountShape, gen: Generator) -> None:
    start = int(START.timestamp())
    for n in range(shape.contact_fields):
        (title, type_, options), lap = _cycled(CONTACT_FIELDS, n)
        created = start + n * 3_600
        account.fields.append(Field(n + 1, _numbered(title, lap), type_, options, created, created))
    for n in range(shape.deal_fields):
        (label, type_, options), lap = _cycled(DEAL_FIELDS, n)
        created = start + n * 3_600
        field_ = Field(n + 1, _numbered(label, lap), type_, options, created, created + 86_400)
        account.deal_fields.append(field_)
    stage_id = 0
    for n in range(shape.pipelines):
        title, lap = _cycled(PIPELINES, n)
        created = start + n * 86_400
        restricted = n >= shape.pipelines - shape.restricted_pipelines
        # Every third pipeline's stages have null dates, as in the `/dealGroups` example.
        dated = n % 3 != 1
        ids = []
        for order in range(1, shape.stages_per_pipeline + 1):
            stage_id += 1
            stage_title, stage_lap = _cycled(STAGES, order - 1)
            stamp = created + order * 60 if dated else None
            color = COLORS[stage_id % len(COLORS)]
            stage = Stage(
                stage_id, n + 1, _numbered(stage_title, stage_lap), order, color, stamp, stamp
            )
            account.stages.append(stage)
            ids.append(stage_id)
        currency = CURRENCIES[1] if n % 4 == 3 else CURRENCIES[0]
        pipeline = Pipeline(
            n + 1, _numbered(title, lap), currency, created, created, tuple(ids), restricted
        )
        account.pipelines.append(pipeline)
    account.users.append(User(1, "admin", "John", "Doe", "admin@example.com"))
    for person in gen.people(max(shape.users - 1, 0), first_id=2):
        username = f"{ascii_slug(person.first_name)}.{ascii_slug(person.last_name)}"
        account.users.append(
            User(person.id, username, person.first_name, person.last_name, person.email)
        )


class _Draws:
    """Seeded draws built on `random.random` alone: `randint`, `choice` and `sample` cost
    several times more, and the seed's scale makes millions of draws."""

    def __init__(self, gen: Generator) -> None:
        self.random = gen.random.random

    def pick(self, items: Sequence[T]) -> T:
        return items[int(self.random() * len(items))]

    def between(self, low: int, high: int) -> int:
        return low + int(self.random() * (high - low + 1))

    def some(self, count: int, low: int, high: int) -> list[int]:
        """Sorted distinct indices below `count`, how many uniform in `low`…`high`."""
        k = min(count, self.between(low, high))
        picked = list(range(count))
        for i in range(k):  # the first k steps of a Fisher-Yates shuffle
            j = i + int(self.random() * (count - i))
            picked[i], picked[j] = picked[j], picked[i]
        return sorted(picked[:k])


def _multi(options: tuple[str, ...], draw: _Draws) -> str:
    """One to three options as `||a||b||`, AC's multi-value encoding (create-fieldvalue doc)."""
    return "||" + "||".join(options[k] for k in draw.some(len(options), 1, 3)) + "||"


def _day(draw: _Draws, low: float, high: float) -> str:
    return datetime.fromtimestamp(low + draw.random() * (high - low), UTC).strftime("%Y-%m-%d")


def _contact_value(f: Field, draw: _Draws, pool: dict[str, str]) -> str:
    if f.type in ("dropdown", "radio"):
        return draw.pick(f.options)
    if f.type in ("checkbox", "listbox"):
        text = _multi(f.options, draw)
    elif f.type == "date":
        text = _day(draw, -6e8, 9e8)
    elif f.type == "datetime":  # stored converted to the account's time zone
        return iso(int(START.timestamp() + draw.random() * _SPAN) // 60 * 60)
    elif f.type == "text":
        text = f"{draw.pick(LAST_NAMES)} {draw.pick(('Ltd', 'BV', 'GmbH', 'Inc', 'Group'))}"
    else:
        return draw.pick(PHRASES)
    return pool.setdefault(text, text)  # share equal strings: memory, not meaning


def _generate_contacts(account: Account, shape: AccountShape, gen: Generator) -> None:
    c, table, draw = account.contacts, account.field_values, _Draws(gen)
    random, fields, mean = draw.random, account.fields, shape.values_per_contact
    pool: dict[str, str] = {}
    for first_id in range(1, shape.contacts + 1, CHUNK):
        count = min(CHUNK, shape.contacts + 1 - first_id)
        for person in gen.people(count, start=START, end=END, first_id=first_id):
            created = int(person.created_at.timestamp())
            updated = max(int(person.updated_at.timestamp()), created)
            c.email.append(person.email)
            c.first.append(person.first_name)
            c.last.append(person.last_name)
            c.phone.append(person.phone if random() < 0.6 else "")
            c.created.append(created)
            c.updated.append(updated)
            # Older records carry MySQL zero dates instead of nulls (list-contacts example).
            c.flags.append(LIVE | (LEGACY if random() < 0.15 else 0))
            first_row = len(table)
            for n in draw.some(len(fields), max(mean - 2, 0), mean + 2):  # ~mean values
                value = _contact_value(fields[n], draw, pool)
                table.append(person.id, n + 1, value, created, draw.between(created, updated))
            table.start(person.id, first_row)


def _deal_value(f: Field, draw: _Draws, pool: dict[str, str]) -> str:
    if f.type == "dropdown":
        return draw.pick(f.options)
    if f.type == "multiselect":
        text = _multi(f.options, draw)
    elif f.type == "number":
        text = str(draw.pick((1, 3, 6, 12, 24, 36)))
    elif f.type == "currency":  # in cents (create-dealCustomFieldData doc)
        text = str(draw.between(10, 5_000) * 1_000)
    elif f.type == "date":
        text = _day(draw, START.timestamp(), 1.9e9)
    else:
        return draw.pick(PHRASES)
    return pool.setdefault(text, text)


def _generate_deals(account: Account, shape: AccountShape, gen: Generator) -> None:
    d, table, draw = account.deals, account.deal_values, _Draws(gen)
    random, pick, between, fields = draw.random, draw.pick, draw.between, account.deal_fields
    mean = shape.values_per_deal
    open_pipes = [p for p in account.pipelines if not p.restricted] or account.pipelines
    hidden_pipes = [p for p in account.pipelines if p.restricted] or open_pipes
    statuses = (0,) * 12 + (1,) * 5 + (2,) * 3  # 60 % open, 25 % won, 15 % lost
    pool: dict[str, str] = {}
    low, log_low, log_span = int(START.timestamp()), math.log(100), math.log(1_000)
    for deal_id in range(1, shape.deals + 1):
        pipeline = pick(hidden_pipes if random() < shape.restricted_share else open_pipes)
        created = low + int(random() * _SPAN)
        updated = between(created, low + int(_SPAN))
        title = f"{pick(ADJECTIVES)} {pick(ANIMALS)}"
        d.title.append(pool.setdefault(title, title))
        d.description.append(pick(("", *PHRASES)))
        d.value.append(int(math.exp(log_low + random() * log_span)) * 100)  # $100 … $100k
        d.currency.append(CURRENCIES.index(pipeline.currency))
        d.status.append(pick(statuses))
        d.stage.append(pick(pipeline.stages))
        d.owner.append(between(1, len(account.users)))
        d.contact.append(between(1, shape.contacts) if shape.contacts else 0)
        d.created.append(created)
        d.updated.append(updated)
        d.win.append(between(0, 100) if random() < 0.3 else 255)
        quirks = (TASK_ZERO if random() < 0.2 else 0) | (ZERO_EDATE if random() < 0.1 else 0)
        d.flags.append(LIVE | quirks)
        if pipeline.restricted:
            continue  # values of deals the user cannot see are never listed
        first_row = len(table)
        for n in draw.some(len(fields), max(mean - 2, 0), mean + 2):
            value = _deal_value(fields[n], draw, pool)
            table.append(deal_id, n + 1, value, created, between(created, updated))
        table.start(deal_id, first_row)
