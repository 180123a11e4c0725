"""The orders behind the Magento 2 sandbox: one generated shop, stored by column, seeded.

Orders are parallel columns (`array`s and `bytearray`s, about 45 bytes an order) and buyers
columns of their own, so 100,000 orders take a few MB. An order's JSON (`Shop.order`) is
built when it is served, from its columns and a per-order `salt` that picks its items,
payment and street. Here are the records, the queries `/V1/orders` answers (`Shop.search`:
filter groups and sort orders, cached until the next change) and the mutations.

Times are whole epoch seconds, served as "YYYY-MM-DD HH:MM:SS" UTC (pull §2.8). The shop is
generated over the two years before the start of the sandbox clock's UTC day, so a seed gives
the same orders all day long: a sandbox process and an in-process copy agree.

JSON follows Magento's serializer (`Magento\\Framework\\Reflection\\DataObjectProcessor`): a
null value is left out unless the interface marks the field required, so guests have no
`customer_id` key while an order without an email still carries `"customer_email": null`.
"""

from __future__ import annotations

import math
import random
import re
import time
from array import array
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

from sandbox.generate import DOMAINS, FIRST_NAMES, LAST_NAMES, ascii_slug

DAY = 86_400
SPAN = 730 * DAY  # the shop's history: two years
GUEST, NO_EMAIL, NAMELESS, UPPER, SPACES, HIDDEN = 1, 2, 4, 8, 16, 32  # bits of an order's flags
ADDRESS_STYLE = GUEST | NO_EMAIL | NAMELESS  # what a double submit shares with its twin
GAP_SHARE = 0.02  # ids skipped (failed checkouts, deleted orders): a few gaps
TWIN_SHARE = 0.01  # double submits: same buyer, same created_at second, next id
REPEAT_SHARE = 0.35  # orders by a buyer seen before
REGISTERED_SHARE = 0.55  # buyers with a customer account
GUEST_CHECKOUT_SHARE = 0.05  # of a registered buyer's orders, placed without logging in
NAMELESS_SHARE = 0.2  # of guest orders: names only in the billing address (pre-2.3 guests)
NO_EMAIL_SHARE = 0.005  # imported orders without an email (the spec says required; shops differ)
UPPER_SHARE, SPACES_SHARE = 0.06, 0.04  # emails as typed: capitals, stray spaces
LATE_SHARE = 0.01  # stamped a few seconds before the previous id: ids are allocated at insert
QUOTE_OFFSET = 1_000  # quote ids run ahead of order ids: abandoned carts
FLAT_RATE = 5.0  # flatrate shipping, per item, in the base currency (Magento's default method)
REQUIRED = frozenset({"customer_email", "base_grand_total", "grand_total", "items"})  # spec
PAYMENT_REQUIRED = frozenset({"account_status", "additional_information", "cc_last4", "method"})


@dataclass(frozen=True, slots=True)
class Website:
    """`store-data-website-interface`."""

    id: int
    code: str
    name: str
    default_group_id: int

    def json(self) -> dict[str, Any]:
        """As `GET /V1/store/websites` lists it."""
        return {
            "id": self.id,
            "code": self.code,
            "name": self.name,
            "default_group_id": self.default_group_id,
        }


@dataclass(frozen=True, slots=True)
class StoreView:
    """`store-data-store-interface`, plus its group's name and its order currency."""

    id: int
    code: str
    name: str
    website_id: int
    store_group_id: int
    group_name: str
    currency: str
    rate: float  # order currency per base currency (EUR)
    share: float  # of generated buyers who shop here

    def json(self) -> dict[str, Any]:
        """As `GET /V1/store/storeViews` lists it."""
        return {
            "id": self.id,
            "code": self.code,
            "name": self.name,
            "website_id": self.website_id,
            "store_group_id": self.store_group_id,
            "is_active": 1,
        }


# The admin website and store view (id 0) are listed like the others (pull §2.9); no order
# is placed there. Two websites with two store views each; the US one sells in dollars.
WEBSITES = (
    Website(0, "admin", "Admin", 0),
    Website(1, "base", "Main Website", 1),
    Website(2, "us", "US Website", 2),
)
STORE_VIEWS = (
    StoreView(0, "admin", "Admin", 0, 0, "Default", "EUR", 1.0, 0.0),
    StoreView(1, "default", "Default Store View", 1, 1, "Main Website Store", "EUR", 1.0, 0.5),
    StoreView(2, "nl", "Nederlands", 1, 1, "Main Website Store", "EUR", 1.0, 0.15),
    StoreView(3, "us_en", "US English", 2, 2, "US Store", "USD", 1.08, 0.25),
    StoreView(4, "us_es", "US Español", 2, 2, "US Store", "USD", 1.08, 0.1),
)
BASE_CURRENCY = "EUR"


@dataclass(frozen=True, slots=True)
class Place:
    """Where a buyer lives; US addresses carry a region (ids from Magento's directory)."""

    city: str
    country_id: str
    postcode: str
    street: str
    region: str | None = None
    region_code: str | None = None
    region_id: int | None = None


EU_PLACES = (
    Place("Amsterdam", "NL", "1015 CJ", "Keizersgracht"),
    Place("Utrecht", "NL", "3511 LX", "Oudegracht"),
    Place("Rotterdam", "NL", "3011 AD", "Coolsingel"),
    Place("Antwerpen", "BE", "2000", "Meir"),
    Place("Gent", "BE", "9000", "Veldstraat"),
    Place("Berlin", "DE", "10117", "Friedrichstraße"),
    Place("Köln", "DE", "50667", "Hohe Straße"),
    Place("Lyon", "FR", "69002", "Rue de la République"),
    Place("Dublin", "IE", "D02 X285", "Grafton Street"),
    Place("Madrid", "ES", "28013", "Calle Mayor"),
)
US_PLACES = (
    Place("Calder", "US", "49628-7978", "Honey Bluff Parkway", "Michigan", "MI", 33),
    Place("Austin", "US", "78701", "Congress Avenue", "Texas", "TX", 57),
    Place("Portland", "US", "97205", "Burnside Street", "Oregon", "OR", 49),
    Place("Denver", "US", "80202", "Larimer Street", "Colorado", "CO", 13),
    Place("Boston", "US", "02108", "Tremont Street", "Massachusetts", "MA", 32),
    Place("Seattle", "US", "98101", "Pike Street", "Washington", "WA", 62),
)
PLACES = EU_PLACES + US_PLACES


@dataclass(frozen=True, slots=True)
class Product:
    """A catalogue line: price in the base currency, weight in kg."""

    id: int
    sku: str
    name: str
    price: float
    weight: float


PRODUCTS = (
    Product(1, "TB-CANVAS-01", "Canvas Tote Bag", 24.0, 0.4),
    Product(2, "MG-STONE-02", "Stoneware Mug", 12.5, 0.5),
    Product(3, "NB-LINEN-A5", "Linen Notebook A5", 9.95, 0.3),
    Product(4, "SC-WOOL-GRY", "Wool Scarf, Grey", 39.0, 0.3),
    Product(5, "BT-STEEL-750", "Steel Water Bottle", 19.0, 0.4),
    Product(6, "HD-ORG-M-NVY", "Organic Hoodie M, Navy", 59.0, 0.7),
    Product(7, "LM-DESK-OAK", "Oak Desk Lamp", 89.0, 1.8),
    Product(8, "CN-SOY-LAV", "Soy Candle, Lavender", 16.0, 0.3),
    Product(9, "PL-YOGA-6MM", "Yoga Mat 6 mm", 45.0, 1.2),
    Product(10, "SK-SOCK-3PK", "Cotton Socks, 3 pairs", 14.0, 0.2),
)
PAYMENTS = (
    ("checkmo", "Check / Money order"),
    ("banktransfer", "Bank Transfer Payment"),
    ("cashondelivery", "Cash On Delivery"),
)
# (status, state): the status is configurable, the state is Magento's fixed machine state.
STATUSES = (
    ("pending", "new"),
    ("processing", "processing"),
    ("complete", "complete"),
    ("canceled", "canceled"),
    ("closed", "closed"),
    ("holded", "holded"),
)
STATUS_INDEX = {status: n for n, (status, _) in enumerate(STATUSES)}
PAID = frozenset({1, 2, 4})  # processing, complete, closed: invoiced
# Cumulative odds per status (in STATUSES order): young orders are still open, old ones done.
RECENT_ODDS = (0.4, 0.8, 0.95, 1.0, 1.0, 1.0)
SETTLED_ODDS = (0.03, 0.1, 0.8, 0.92, 0.98, 1.0)
# Per status: (min, max) seconds from created_at to updated_at.
UPDATE_DELAYS = ((0, 0), (600, 3 * DAY), (DAY, 10 * DAY), (0, 2 * DAY), (10 * DAY, 30 * DAY),
                 (DAY, 5 * DAY))  # fmt: skip

# Column kinds decide how filters compare (pull §2.3): numbers as numbers, times as times (MySQL
# reads the value as a DATETIME), text case-insensitively (the utf8 `_general_ci` collation).
INT, NUM, TIME, TEXT = "int", "num", "time", "text"
COLUMNS: dict[str, str] = {
    "base_currency_code": TEXT, "base_discount_amount": NUM, "base_grand_total": NUM,
    "base_discount_tax_compensation_amount": NUM, "base_shipping_amount": NUM,
    "base_shipping_discount_amount": NUM, "base_shipping_incl_tax": NUM,
    "base_shipping_tax_amount": NUM, "base_subtotal": NUM, "base_subtotal_incl_tax": NUM,
    "base_tax_amount": NUM, "base_total_canceled": NUM, "base_total_due": NUM,
    "base_total_paid": NUM, "base_to_global_rate": NUM, "base_to_order_rate": NUM,
    "billing_address_id": INT, "created_at": TIME, "customer_email": TEXT,
    "customer_firstname": TEXT, "customer_group_id": INT, "customer_id": INT,
    "customer_is_guest": INT, "customer_lastname": TEXT, "customer_note_notify": INT,
    "discount_amount": NUM, "email_sent": INT, "entity_id": INT, "global_currency_code": TEXT,
    "grand_total": NUM, "discount_tax_compensation_amount": NUM, "increment_id": TEXT,
    "is_virtual": INT, "order_currency_code": TEXT, "protect_code": TEXT, "quote_id": INT,
    "remote_ip": TEXT, "shipping_amount": NUM, "shipping_description": TEXT,
    "shipping_discount_amount": NUM, "shipping_discount_tax_compensation_amount": NUM,
    "shipping_incl_tax": NUM, "shipping_tax_amount": NUM, "state": TEXT, "status": TEXT,
    "store_currency_code": TEXT, "store_id": INT, "store_name": TEXT, "store_to_base_rate": NUM,
    "store_to_order_rate": NUM, "subtotal": NUM, "subtotal_incl_tax": NUM, "tax_amount": NUM,
    "total_canceled": NUM, "total_due": NUM, "total_item_count": INT, "total_paid": NUM,
    "total_qty_ordered": NUM, "updated_at": TIME, "weight": NUM,
    # Real `sales_order` columns that are null in every generated order (so never served).
    "applied_rule_ids": TEXT, "coupon_code": TEXT, "customer_dob": TIME, "customer_gender": INT,
    "customer_middlename": TEXT, "customer_note": TEXT, "customer_prefix": TEXT,
    "customer_suffix": TEXT, "customer_taxvat": TEXT, "discount_description": TEXT,
    "ext_customer_id": TEXT, "ext_order_id": TEXT, "hold_before_state": TEXT,
    "hold_before_status": TEXT, "original_increment_id": TEXT, "relation_child_id": TEXT,
    "relation_parent_id": TEXT, "x_forwarded_for": TEXT,
}  # fmt: skip
_SLUGS = {name: ascii_slug(name) for name in (*FIRST_NAMES, *LAST_NAMES)}


def stamp(ts: int) -> str:
    """Epoch seconds as Magento serves them: "YYYY-MM-DD HH:MM:SS", UTC, no offset."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))


def parse_time(text: str) -> int | None:
    """A filter value as MySQL reads a DATETIME ("2024-01-31", "2024-01-31 12:00:00", a `T`
    or an offset too), in epoch seconds; None when it is no time at all."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return math.floor(when.timestamp())


def day_start(ts: float) -> int:
    """Midnight UTC of the day `ts` falls in: where generated history ends."""
    return int(ts // DAY * DAY)


class UnknownField(LookupError):
    """A filter or sort on something that is not an order column (MySQL: unknown column)."""


@dataclass(frozen=True, slots=True)
class Filter:
    """One `searchCriteria[filter_groups][g][filters][f]`; None where the request had nothing."""

    field: str | None
    value: str | None = None
    condition: str | None = None  # None: eq


Group = tuple[Filter, ...]  # OR'ed
Sort = tuple[str, bool]  # (field, descending)


@dataclass
class Buyers:
    """Buyer columns; a buyer's number is its index. `customer_id` 0: no account."""

    first: bytearray = field(default_factory=bytearray)
    last: bytearray = field(default_factory=bytearray)
    domain: bytearray = field(default_factory=bytearray)
    place: bytearray = field(default_factory=bytearray)
    home: bytearray = field(default_factory=bytearray)  # store view id
    customer_id: array[int] = field(default_factory=lambda: array("i"))
    emails: dict[int, str] = field(default_factory=dict)  # given by a test, used as is
    by_email: dict[str, int] = field(default_factory=dict)
    customers: int = 0

    def __len__(self) -> int:
        return len(self.first)

    def add(self, draw: Callable[[], float], *, registered: bool, home: int) -> int:
        """A new buyer living near `home` (a store view id)."""
        us = STORE_VIEWS[home].website_id == 2  # PLACES: the EU ones, then the US ones
        self.first.append(int(draw() * len(FIRST_NAMES)))
        self.last.append(int(draw() * len(LAST_NAMES)))
        self.domain.append(int(draw() * len(DOMAINS)))
        place = int(draw() * len(US_PLACES if us else EU_PLACES))
        self.place.append(place + len(EU_PLACES) if us else place)
        self.home.append(home)
        if registered:
            self.customers += 1
        self.customer_id.append(self.customers if registered else 0)
        return len(self.first) - 1

    def named(self, email: str, draw: Callable[[], float]) -> int:
        """The buyer a test named by `email` (a customer with an account), new on first use."""
        buyer = self.by_email.get(email)
        if buyer is None:
            buyer = self.add(draw, registered=True, home=_home(draw))
            self.emails[buyer], self.by_email[email] = email, buyer
        return buyer

    def email(self, buyer: int) -> str:
        """The address as the buyer means it; orders may carry it with capitals or spaces."""
        given = self.emails.get(buyer)
        if given is not None:
            return given
        first, last = FIRST_NAMES[self.first[buyer]], LAST_NAMES[self.last[buyer]]
        return f"{_SLUGS[first]}.{_SLUGS[last]}{buyer + 1}@{DOMAINS[self.domain[buyer]]}"


def _home(draw: Callable[[], float]) -> int:
    """A store view id, by the share of buyers each one has."""
    point, total = draw(), 0.0
    for view in STORE_VIEWS[1:]:
        total += view.share
        if point < total:
            return view.id
    return STORE_VIEWS[-1].id


def _pick(odds: tuple[float, ...], point: float) -> int:
    return next((n for n, bound in enumerate(odds) if point < bound), len(odds) - 1)


class Matches:
    """The orders a search found, in order: a list of column indices, or (the keyset case)
    a slice of the id column without materialising it."""

    def __init__(
        self,
        rows: list[int] | None = None,
        span: tuple[int, int, bool] = (0, 0, False),
    ) -> None:
        self._rows = rows
        self._span = span  # (lo, hi, descending): every index in [lo, hi), none hidden

    @property
    def total(self) -> int:
        """`total_count`: every match, unpaged."""
        if self._rows is not None:
            return len(self._rows)
        lo, hi, _ = self._span
        return hi - lo

    def slice(self, start: int, stop: int) -> list[int]:
        """Indices of matches `start` to `stop` (0-based, stop exclusive)."""
        if self._rows is not None:
            return self._rows[start:stop]
        lo, hi, descending = self._span
        if descending:
            return list(range(hi - 1 - start, max(hi - 1 - stop, lo - 1), -1))
        return list(range(lo + start, min(lo + stop, hi)))


class Shop:
    """One shop's orders, buyers, queries and mutations; `ids` holds entity ids ascending."""

    def __init__(self, end: int) -> None:
        self.end = end  # generated history stops here (epoch seconds)
        self.ids = array("q")
        self.created = array("q")
        self.updated = array("q")
        self.buyer = array("i")
        self.store = bytearray()  # store view id
        self.status = bytearray()  # index into STATUSES
        self.flags = bytearray()
        self.salt = array("I")  # picks items, payment, street number, ip
        self.seq = array("i")  # the order's number in its store (increment_id)
        self.buyers = Buyers()
        self.overrides: dict[int, dict[str, Any]] = {}  # by index: fields a test set
        self.hidden: list[int] = []  # sorted indices of orders not committed yet
        self.version = 0  # bumped by every mutation; cached answers carry it
        self._next_seq = [1] * len(STORE_VIEWS)
        self._cache: dict[Hashable, tuple[int, list[int]]] = {}

    def __len__(self) -> int:
        return len(self.ids)

    # ---- storing ---------------------------------------------------------------------------

    def append(
        self,
        entity_id: int,
        created: int,
        updated: int,
        buyer: int,
        store: int,
        status: int,
        flags: int,
        salt: int,
    ) -> int:
        """Add an order after every other (its id must be the largest); returns its index."""
        self.ids.append(entity_id)
        self.created.append(created)
        self.updated.append(updated)
        self.buyer.append(buyer)
        self.store.append(store)
        self.status.append(status)
        self.flags.append(flags)
        self.salt.append(salt)
        self.seq.append(self._next_seq[store])
        self._next_seq[store] += 1
        return len(self.ids) - 1

    def index(self, entity_id: int) -> int:
        """The column index of `entity_id`; KeyError when there is no such order."""
        at = bisect_left(self.ids, entity_id)
        if at == len(self.ids) or self.ids[at] != entity_id:
            raise KeyError(f"no order {entity_id}")
        return at

    # ---- JSON of one order -----------------------------------------------------------------

    def email(self, index: int) -> str | None:
        """`customer_email` as stored: the buyer's address, sometimes with capitals or spaces."""
        flags = self.flags[index]
        if flags & NO_EMAIL:
            return None
        buyer = self.buyer[index]
        email = self.buyers.email(buyer)
        if buyer in self.buyers.emails:
            return email
        if flags & UPPER:
            local, _, domain = email.partition("@")
            email = f"{local.capitalize()}@{domain.capitalize()}"
        if flags & SPACES:
            email = f" {email}" if self.salt[index] & 1 else f"{email} "
        return email

    def increment_id(self, index: int) -> str:
        """Per-store numbers; store views other than 1 prefix their id (Magento's sequences)."""
        store = self.store[index]
        return f"{'' if store == 1 else store}{self.seq[index]:09d}"

    def _lines(self, index: int) -> list[tuple[Product, int]]:
        salt = self.salt[index]
        first = PRODUCTS[(salt >> 2) % len(PRODUCTS)]
        lines = [(first, 1 + ((salt >> 8) % 5 == 0))]
        if salt & 3 == 0:  # a quarter of the orders have a second line
            other = PRODUCTS[(first.id + (salt >> 12) % (len(PRODUCTS) - 1)) % len(PRODUCTS)]
            lines.append((other, 1))
        return lines

    def order(self, index: int) -> dict[str, Any]:
        """The order as `GET /V1/orders` serves it (`sales-data-order-interface`)."""
        entity_id, salt = self.ids[index], self.salt[index]
        view = STORE_VIEWS[self.store[index]]
        status, state = STATUSES[self.status[index]]
        paid, canceled = self.status[index] in PAID, status == "canceled"
        flags, buyer, email = self.flags[index], self.buyer[index], self.email(index)
        b = self.buyers
        guest = bool(flags & GUEST)
        first, last = FIRST_NAMES[b.first[buyer]], LAST_NAMES[b.last[buyer]]
        customer_id = b.customer_id[buyer]
        created, updated = stamp(self.created[index]), stamp(self.updated[index])
        rate = view.rate
        lines, items = self._lines(index), []
        base_subtotal = subtotal = weight = 0.0
        qty_total = 0
        for n, (product, qty) in enumerate(lines):
            price = round(product.price * rate, 2)
            base_subtotal += product.price * qty
            subtotal += price * qty
            weight += product.weight * qty
            qty_total += qty
            items.append(_item(entity_id * 2 - 1 + n, entity_id, view.id, product, qty, price,
                               created, updated, shipped=paid))  # fmt: skip
        base_shipping = FLAT_RATE * qty_total
        shipping = round(base_shipping * rate, 2)
        base_grand, grand = round(base_subtotal + base_shipping, 2), round(subtotal + shipping, 2)
        order: dict[str, Any] = {
            "base_currency_code": BASE_CURRENCY,
            "base_discount_amount": 0.0,
            "base_grand_total": base_grand,
            "base_discount_tax_compensation_amount": 0.0,
            "base_shipping_amount": base_shipping,
            "base_shipping_discount_amount": 0.0,
            "base_shipping_incl_tax": base_shipping,
            "base_shipping_tax_amount": 0.0,
            "base_subtotal": round(base_subtotal, 2),
            "base_subtotal_incl_tax": round(base_subtotal, 2),
            "base_tax_amount": 0.0,
            "base_total_canceled": base_grand if canceled else None,
            "base_total_due": 0.0 if paid else base_grand,
            "base_total_paid": base_grand if paid else None,
            "base_to_global_rate": 1.0,
            "base_to_order_rate": rate,
            "billing_address_id": entity_id * 2 - 1,
            "created_at": created,
            "customer_email": email,
            "customer_firstname": None if flags & NAMELESS else first,
            "customer_group_id": 0 if guest else 1,  # 0: NOT LOGGED IN, 1: General
            "customer_id": None if guest else customer_id,
            "customer_is_guest": int(guest),
            "customer_lastname": None if flags & NAMELESS else last,
            "customer_note_notify": 1,
            "discount_amount": 0.0,
            "email_sent": None if email is None else 1,
            "entity_id": entity_id,
            "global_currency_code": BASE_CURRENCY,
            "grand_total": grand,
            "discount_tax_compensation_amount": 0.0,
            "increment_id": self.increment_id(index),
            "is_virtual": 0,
            "order_currency_code": view.currency,
            "protect_code": f"{(salt * 2_654_435_761) & 0xFFFFFF:06x}",
            "quote_id": entity_id + QUOTE_OFFSET,
            "remote_ip": f"198.51.100.{salt % 254 + 1}",  # TEST-NET-2 (RFC 5737)
            "shipping_amount": shipping,
            "shipping_description": "Flat Rate - Fixed",
            "shipping_discount_amount": 0.0,
            "shipping_discount_tax_compensation_amount": 0.0,
            "shipping_incl_tax": shipping,
            "shipping_tax_amount": 0.0,
            "state": state,
            "status": status,
            "store_currency_code": BASE_CURRENCY,
            "store_id": view.id,
            "store_name": f"{WEBSITES[view.website_id].name}\n{view.group_name}\n{view.name}",
            "store_to_base_rate": 0.0,
            "store_to_order_rate": 0.0,
            "subtotal": round(subtotal, 2),
            "subtotal_incl_tax": round(subtotal, 2),
            "tax_amount": 0.0,
            "total_canceled": grand if canceled else None,
            "total_due": 0.0 if paid else grand,
            "total_item_count": len(items),
            "total_paid": grand if paid else None,
            "total_qty_ordered": float(qty_total),
            "updated_at": updated,
            "weight": round(weight, 4),
        }
        place = PLACES[b.place[buyer]]
        number = salt % 300 + 1
        street = f"{number} {place.street}" if place.region else f"{place.street} {number}"
        address = {
            "address_type": "billing",
            "city": place.city,
            "country_id": place.country_id,
            "customer_address_id": None if guest else buyer + 1,
            "customer_id": None if guest else customer_id,
            "email": email,
            "entity_id": entity_id * 2 - 1,
            "firstname": first,
            "lastname": last,
            "parent_id": entity_id,
            "postcode": place.postcode,
            "region": place.region,
            "region_code": place.region_code,
            "region_id": place.region_id,
            "street": [street],
            "telephone": f"+1555{buyer % 10_000_000:07d}",  # fictional (+1 555)
        }
        method, title = PAYMENTS[(salt >> 16) % len(PAYMENTS)]
        order["items"] = items
        order["billing_address"] = _present(address)
        order["payment"] = _present(
            {
                "account_status": None,  # required by the spec, so served as null (see module doc)
                "additional_information": [title],
                "amount_ordered": grand,
                "amount_paid": grand if paid else None,
                "base_amount_ordered": base_grand,
                "base_amount_paid": base_grand if paid else None,
                "base_shipping_amount": base_shipping,
                "cc_last4": None,
                "entity_id": entity_id,
                "method": method,
                "parent_id": entity_id,
                "shipping_amount": shipping,
            },
            PAYMENT_REQUIRED,
        )
        order["status_histories"] = []
        shipping_address = {**address, "address_type": "shipping", "entity_id": entity_id * 2}
        order["extension_attributes"] = {
            "shipping_assignments": [
                {
                    "shipping": {
                        "address": _present(shipping_address),
                        "method": "flatrate_flatrate",
                        "total": {
                            "base_shipping_amount": base_shipping,
                            "base_shipping_incl_tax": base_shipping,
                            "shipping_amount": shipping,
                            "shipping_incl_tax": shipping,
                        },
                    },
                    "items": items,
                }
            ]
        }
        order = _present(order)
        overrides = self.overrides.get(index)
        return order if overrides is None else _overlay(order, overrides)

    # ---- queries ---------------------------------------------------------------------------

    def value(self, index: int, name: str) -> Any:
        """A top-level field of an order as filters compare it; times as epoch seconds."""
        overrides = self.overrides.get(index)
        if overrides is not None and name in overrides:
            return overrides[name]
        getter = self._getters.get(name)
        if getter is not None:
            return getter(self, index)
        return self.order(index).get(name)

    _getters: ClassVar[Mapping[str, Callable[[Shop, int], Any]]] = {
        "entity_id": lambda s, i: s.ids[i],
        "created_at": lambda s, i: s.created[i],
        "updated_at": lambda s, i: s.updated[i],
        "store_id": lambda s, i: s.store[i],
        "status": lambda s, i: STATUSES[s.status[i]][0],
        "state": lambda s, i: STATUSES[s.status[i]][1],
        "customer_email": lambda s, i: s.email(i),
        "customer_is_guest": lambda s, i: s.flags[i] & GUEST,
        "customer_group_id": lambda s, i: 0 if s.flags[i] & GUEST else 1,
        "customer_id": lambda s, i: (
            None if s.flags[i] & GUEST else s.buyers.customer_id[s.buyer[i]]
        ),
        "customer_firstname": lambda s, i: (
            None if s.flags[i] & NAMELESS else FIRST_NAMES[s.buyers.first[s.buyer[i]]]
        ),
        "customer_lastname": lambda s, i: (
            None if s.flags[i] & NAMELESS else LAST_NAMES[s.buyers.last[s.buyer[i]]]
        ),
        "increment_id": lambda s, i: s.increment_id(i),
        "order_currency_code": lambda s, i: STORE_VIEWS[s.store[i]].currency,
        "quote_id": lambda s, i: s.ids[i] + QUOTE_OFFSET,
        "billing_address_id": lambda s, i: s.ids[i] * 2 - 1,
    }

    def search(self, groups: tuple[Group, ...], sorts: tuple[Sort, ...]) -> Matches:
        """The visible orders every group matches (a group: any of its filters), sorted.

        Groups that bound `entity_id` alone (eq, gt, gteq, lt, lteq, from, to) narrow the id
        range by bisection, and a search sorted by `entity_id` with nothing else to filter
        never materialises its rows: the keyset walk of pull §2.11 costs the page, not a scan.
        Without `sortOrders`, orders come by `entity_id` ascending (a primary-key scan).
        """
        for group in groups:
            for f in group:
                _kind(f.field)
        for name, _ in sorts:
            _kind(name)
        lo, hi, rest = 0, len(self.ids), []
        for group in groups:
            bounds = _id_bounds(group, self.ids)
            if bounds is None:
                rest.append(group)
            else:
                lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
        hi = max(lo, hi)
        by_id = not sorts or sorts[0][0] == "entity_id"
        descending = bool(sorts) and sorts[0][1]
        hidden = bisect_left(self.hidden, hi) - bisect_left(self.hidden, lo)
        if by_id and not rest and not hidden:
            return Matches(span=(lo, hi, descending))
        key = (lo, hi, tuple(rest), sorts)
        cached = self._cache.get(key)
        if cached is not None and cached[0] == self.version:
            return Matches(cached[1])
        rows = self._select(lo, hi, rest)
        if by_id:
            if descending:
                rows.reverse()
        else:
            for name, desc in reversed(sorts):  # stable sorts, least significant first
                rows.sort(key=self._sort_key(name), reverse=desc)
        self._cache[key] = (self.version, rows)
        if len(self._cache) > 8:  # a few walks at once; each entry is one list of ints
            del self._cache[next(iter(self._cache))]
        return Matches(rows)

    def _select(self, lo: int, hi: int, groups: list[Group]) -> list[int]:
        flags = self.flags
        rows = [i for i in range(lo, hi) if not flags[i] & HIDDEN]
        for group in groups:
            tests = [self._test(f) for f in group]
            if len(tests) == 1:
                rows = [i for i in rows if tests[0](i)]
            else:
                rows = [i for i in rows if any(test(i) for test in tests)]
        return rows

    def _column(self, name: str) -> Callable[[int], Any]:
        getter, overrides = self._getters.get(name), self.overrides
        if getter is not None and not overrides:
            return lambda i: getter(self, i)
        return lambda i: self.value(i, name)

    def _test(self, f: Filter) -> Callable[[int], bool]:
        """`f` as a predicate on column indices (SQL: a null value matches only `null`)."""
        assert f.field is not None  # `_kind` rejected nameless filters
        kind, get = _kind(f.field), self._column(f.field)
        condition = (f.condition or "eq").lower()
        if condition == "null":
            return lambda i: get(i) is None
        if condition == "notnull":
            return lambda i: get(i) is not None
        if f.value is None:  # `field = NULL` is never true
            return lambda _: False
        if condition in ("like", "nlike"):
            pattern, wanted = _like(f.value), condition == "like"
            return lambda i: (v := get(i)) is not None and bool(pattern(_text(kind, v))) == wanted
        if condition in ("finset", "nfinset"):
            item, wanted = _key(TEXT, f.value), condition == "finset"
            return lambda i: (
                (v := get(i)) is not None
                and (item in {_key(TEXT, p) for p in _text(kind, v).split(",")}) == wanted
            )
        if condition in ("in", "nin"):
            keys, wanted = {_key(kind, p) for p in f.value.split(",")}, condition == "in"
            return lambda i: (v := get(i)) is not None and (_key(kind, v) in keys) == wanted
        compare = _COMPARE.get(condition, _COMPARE["eq"])  # unknown: Magento falls back to eq
        target = _key(kind, f.value)
        if target is None:  # not a time: MySQL compares with NULL
            return lambda _: False
        return lambda i: (
            (v := get(i)) is not None and (k := _key(kind, v)) is not None and compare(k, target)
        )

    def _sort_key(self, name: str) -> Callable[[int], tuple[bool, Any]]:
        kind, get = _kind(name), self._column(name)

        def key(i: int) -> tuple[bool, Any]:
            value = get(i)
            sortable = None if value is None else _key(kind, value)
            # MySQL puts NULL first ascending; (False, 0) sorts before every (True, value).
            return (False, 0) if sortable is None else (True, sortable)

        return key

    def iter_visible(self) -> Iterator[int]:
        """Indices of the orders queries see, by entity id."""
        flags = self.flags
        return (i for i in range(len(self.ids)) if not flags[i] & HIDDEN)

    # ---- mutations -------------------------------------------------------------------------

    def place(self, count: int, when: int, *, email: str | None, rnd: random.Random) -> list[int]:
        """`count` new pending orders stamped `when`, with ids after every other; returns their
        indices. `email` names one buyer for all of them, else each gets a new buyer."""
        indices, draw, buyers = [], rnd.random, self.buyers
        for _ in range(count):
            if email is None:
                registered = draw() < REGISTERED_SHARE
                buyer = buyers.add(draw, registered=registered, home=_home(draw))
            else:
                buyer = buyers.named(email, draw)
            flags = 0 if buyers.customer_id[buyer] else GUEST
            entity_id = (self.ids[-1] if self.ids else 0) + 1
            store = buyers.home[buyer]
            index = self.append(entity_id, when, when, buyer, store, 0, flags, rnd.getrandbits(32))
            indices.append(index)
        return indices

    def hide(self, index: int) -> None:
        """Keep a reserved order out of every query until `reveal`."""
        self.flags[index] |= HIDDEN
        insort(self.hidden, index)

    def reveal(self, index: int) -> None:
        """Let queries see a hidden order (its transaction committed)."""
        if self.flags[index] & HIDDEN:
            self.flags[index] &= ~HIDDEN & 0xFF
            self.hidden.remove(index)

    def set_fields(self, index: int, fields: Mapping[str, Any]) -> None:
        """Change an order: columns where there are columns, the rest overlaid on its JSON."""
        extra = dict(fields)
        if "status" in extra and extra["status"] in STATUS_INDEX:
            self.status[index] = STATUS_INDEX[extra.pop("status")]
            extra.pop("state", None)  # follows the status
        if "store_id" in extra:
            self.store[index] = int(extra.pop("store_id"))
        if "customer_is_guest" in extra:
            self._flag(index, GUEST, bool(extra.pop("customer_is_guest")))
        if "customer_email" in extra and extra["customer_email"] is None:
            del extra["customer_email"]
            self._flag(index, NO_EMAIL, True)
        for name, column in (("created_at", self.created), ("updated_at", self.updated)):
            if name in extra:
                when = parse_time(str(extra.pop(name)))
                if when is None:
                    raise ValueError(f"{name} must be a time, e.g. 2026-01-31 12:00:00")
                column[index] = when
        if extra:
            self.overrides.setdefault(index, {}).update(extra)

    def _flag(self, index: int, bit: int, on: bool) -> None:
        self.flags[index] = self.flags[index] | bit if on else self.flags[index] & ~bit & 0xFF


def _item(
    item_id: int,
    order_id: int,
    store_id: int,
    product: Product,
    qty: int,
    price: float,
    created: str,
    updated: str,
    *,
    shipped: bool,
) -> dict[str, Any]:
    """One `sales-data-order-item-interface` line (simple product, no tax, no discount)."""
    base_row, row = round(product.price * qty, 2), round(price * qty, 2)
    done = float(qty) if shipped else 0.0
    return {
        "amount_refunded": 0.0,
        "base_amount_refunded": 0.0,
        "base_discount_amount": 0.0,
        "base_original_price": product.price,
        "base_price": product.price,
        "base_price_incl_tax": product.price,
        "base_row_invoiced": base_row if shipped else 0.0,
        "base_row_total": base_row,
        "base_row_total_incl_tax": base_row,
        "base_tax_amount": 0.0,
        "created_at": created,
        "discount_amount": 0.0,
        "discount_percent": 0.0,
        "free_shipping": 0,
        "is_qty_decimal": 0,
        "is_virtual": 0,
        "item_id": item_id,
        "name": product.name,
        "no_discount": 0,
        "order_id": order_id,
        "original_price": price,
        "price": price,
        "price_incl_tax": price,
        "product_id": product.id,
        "product_type": "simple",
        "qty_canceled": 0.0,
        "qty_invoiced": done,
        "qty_ordered": float(qty),
        "qty_refunded": 0.0,
        "qty_shipped": done,
        "quote_item_id": item_id + QUOTE_OFFSET,
        "row_invoiced": row if shipped else 0.0,
        "row_total": row,
        "row_total_incl_tax": row,
        "row_weight": round(product.weight * qty, 4),
        "sku": product.sku,
        "store_id": store_id,
        "tax_amount": 0.0,
        "tax_percent": 0.0,
        "updated_at": updated,
        "weight": product.weight,
    }


def _present(data: dict[str, Any], required: frozenset[str] = REQUIRED) -> dict[str, Any]:
    """Drop null optional fields, as Magento's serializer does (see the module docstring)."""
    return {k: v for k, v in data.items() if v is not None or k in required}


def _overlay(order: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A test's field changes on top of the generated order; a dict merges into a dict."""
    merged = dict(order)
    for name, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(name), dict):
            merged[name] = _present({**merged[name], **value})
        elif value is None and name not in REQUIRED:
            merged.pop(name, None)
        else:
            merged[name] = value
    return merged


# ---- comparing values --------------------------------------------------------------------------

_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b,
    "neq": lambda a, b: a != b,
    "gt": lambda a, b: a > b,
    "gteq": lambda a, b: a >= b,
    "moreq": lambda a, b: a >= b,
    "from": lambda a, b: a >= b,  # a lone `from`: Magento's range pair, one half at a time
    "lt": lambda a, b: a < b,
    "lteq": lambda a, b: a <= b,
    "to": lambda a, b: a <= b,
}
_NUMBER = re.compile(r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _kind(name: str | None) -> str:
    kind = COLUMNS.get(name or "")
    if kind is None:
        raise UnknownField(name)
    return kind


def _key(kind: str, value: Any) -> Any:
    """`value` (a stored value or a filter's string) as `kind` compares it; None: no value.

    Numbers: a string's leading number, else 0 (MySQL's cast). Times: epoch seconds. Text:
    case-folded without trailing spaces (`_general_ci` is a PAD SPACE collation).
    """
    if kind in (INT, NUM):
        if isinstance(value, int | float):
            return value
        match = _NUMBER.match(str(value))
        return float(match.group(0)) if match else 0.0
    if kind == TIME:
        return value if isinstance(value, int) else parse_time(str(value))
    return str(value).casefold().rstrip(" ")


def _text(kind: str, value: Any) -> str:
    """The value as MySQL shows it to LIKE: DECIMAL(20,4) amounts, DATETIME text."""
    if kind == TIME and isinstance(value, int):
        return stamp(value)
    if kind == NUM and isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _like(pattern: str) -> Callable[[str], bool]:
    """SQL LIKE (`%` any run, `_` one character, `\\` escapes), case-insensitive."""
    parts, escaped = [], False
    for ch in pattern:
        if escaped:
            parts.append(re.escape(ch))
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "%":
            parts.append(".*")
        elif ch == "_":
            parts.append(".")
        else:
            parts.append(re.escape(ch))
    regex = re.compile("".join(parts), re.IGNORECASE | re.DOTALL)
    return lambda text: regex.fullmatch(text) is not None


def _id_bounds(group: Group, ids: array[int]) -> tuple[int, int] | None:
    """The index range a group of one `entity_id` comparison allows; None for other groups."""
    if len(group) != 1 or group[0].field != "entity_id" or group[0].value is None:
        return None
    f = group[0]
    condition = (f.condition or "eq").lower()
    if condition not in _COMPARE or condition == "neq":
        return None
    bound = _key(INT, f.value)
    if condition == "eq":
        return bisect_left(ids, bound), bisect_right(ids, bound)
    if condition == "gt":
        return bisect_right(ids, bound), len(ids)
    if condition in ("gteq", "moreq", "from"):
        return bisect_left(ids, bound), len(ids)
    if condition == "lt":
        return 0, bisect_left(ids, bound)
    return 0, bisect_right(ids, bound)  # lteq, to


# ---- generating ----------------------------------------------------------------------------


def generate(count: int, seed: int, end: int) -> Shop:
    """A shop with `count` orders placed over the two years before `end` (epoch seconds).

    Later months are busier (density grows linearly). A third of the orders come from
    returning buyers; 1 % are double submits (same buyer, same second, the next id); about
    half the buyers have an account, the rest check out as guests.
    """
    shop = Shop(end)
    rnd = random.Random(seed)
    draw, bits = rnd.random, rnd.getrandbits
    start = end - SPAN
    times = sorted([start + int(SPAN * math.sqrt(draw())) for _ in range(count)])
    entity_id = 0
    for n, made in enumerate(times):
        entity_id += 1 + (1 + int(draw() * 5) if draw() < GAP_SHARE else 0)
        if n and draw() < TWIN_SHARE:
            buyer, store, made = shop.buyer[-1], shop.store[-1], shop.created[-1]
            flags = shop.flags[-1] & ADDRESS_STYLE
        else:
            buyer, store, flags = _buyer_and_store(shop.buyers, draw, returning=n > 0)
            if n and draw() < LATE_SHARE:
                made = shop.created[-1] - 1 - int(draw() * 5)
        flags |= (UPPER if draw() < UPPER_SHARE else 0) | (SPACES if draw() < SPACES_SHARE else 0)
        status = _pick(RECENT_ODDS if end - made < 3 * DAY else SETTLED_ODDS, draw())
        low, high = UPDATE_DELAYS[status]
        updated = min(made + low + int(draw() * (high - low)), max(made, end - 1))
        shop.append(entity_id, made, updated, buyer, store, status, flags, bits(32))
    return shop


def _buyer_and_store(
    buyers: Buyers, draw: Callable[[], float], *, returning: bool
) -> tuple[int, int, int]:
    """Who places the next order, in which store view, and its guest/name/email flags."""
    if returning and draw() < REPEAT_SHARE:
        buyer = int(draw() * len(buyers))
    else:
        buyer = buyers.add(draw, registered=draw() < REGISTERED_SHARE, home=_home(draw))
    home = buyers.home[buyer]
    store = home if draw() < 0.9 else _home(draw)
    flags = 0
    if draw() < NO_EMAIL_SHARE:
        flags = NO_EMAIL | GUEST
    elif not buyers.customer_id[buyer] or draw() < GUEST_CHECKOUT_SHARE:
        flags = GUEST
    if flags & GUEST and draw() < NAMELESS_SHARE:
        flags |= NAMELESS
    return buyer, store, flags
