"""Magento 2 REST: the typed client the flow reads orders through, and the order → consumer mapping.

Docs: https://developer.adobe.com/commerce/webapi/rest/ — facts used here are in
`shared/api/pull-providers.md` §2 ("pull §…"). Every call carries `Authorization: Bearer`
(an integration token allowed as a bearer token, or an admin token from
`POST /V1/integration/admin/token`, §2.2). Orders are read by keyset: `entity_id gt <last>`,
sorted ascending, `currentPage=1` every time, so neither the default DESC sort nor the
past-the-last-page behaviour, which differs between 2.3 and 2.4 (§2.5), can make a walk loop
or skip. `fields=` trims each order to what a consumer needs (§2.3). The store code in the URL
does not scope orders (§2.1), so the client always calls `/rest/V1`. Timestamps are UTC without
an offset (§2.8).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.http import HttpClient, response_date

MAX_PAGE_SIZE = 300  # "Maximum SearchCriteria pageSize is 300" (pull §2.6)
ORDER_FIELDS = (
    "items[entity_id,increment_id,customer_email,customer_firstname,customer_lastname,"
    "created_at,store_id,billing_address[email,firstname,lastname,telephone,country_id,city]],"
    "total_count"
)
# Column widths of `consumer` (flows/magento/tables.py): a longer value is that order's failure.
WIDTHS = {"email": 320, "first_name": 255, "last_name": 255, "phone": 100, "city": 255}
Filter = tuple[str, str, str]  # field, condition_type, value


def rest_root(base_url: str) -> str:
    """`<shop>/rest/V1` from the shop's URL (or from a URL that already ends in `/V1`)."""
    base = base_url.rstrip("/")
    return base if base.endswith("/V1") else f"{base}/rest/V1"


def search_criteria(
    groups: Sequence[Sequence[Filter]],
    *,
    page_size: int,
    direction: str = "ASC",
) -> dict[str, str]:
    """`searchCriteria[...]` query parameters, sorted by entity_id (pull §2.3).

    Filters within a group are OR'ed, groups are AND'ed. The direction is always sent: without
    it Magento sorts descending.
    """
    params: dict[str, str] = {}
    for g, filters in enumerate(groups):
        for f, (field, condition, value) in enumerate(filters):
            prefix = f"searchCriteria[filter_groups][{g}][filters][{f}]"
            params[f"{prefix}[field]"] = field
            params[f"{prefix}[value]"] = value
            params[f"{prefix}[condition_type]"] = condition
    params["searchCriteria[sortOrders][0][field]"] = "entity_id"
    params["searchCriteria[sortOrders][0][direction]"] = direction
    params["searchCriteria[pageSize]"] = str(page_size)
    params["searchCriteria[currentPage]"] = "1"
    return params


@dataclass(frozen=True)
class OrderPage:
    """One answer to `GET /V1/orders`: the orders, the unpaged count and the shop's clock."""

    items: list[dict[str, Any]]
    total: int
    date: datetime | None


class Magento:
    """Typed reads over the run's `HttpClient` (limits, retries, redaction live there)."""

    def __init__(self, http: HttpClient) -> None:
        self.http = http

    async def orders(
        self, groups: Sequence[Sequence[Filter]], *, page_size: int, direction: str = "ASC"
    ) -> OrderPage:
        params = {
            **search_criteria(groups, page_size=page_size, direction=direction),
            "fields": ORDER_FIELDS,
        }
        response = await self.http.request("GET", "/orders", params=params, parse_json=True)
        body = response.json()
        if not isinstance(body, dict):
            body = {}
        items = [item for item in body.get("items") or [] if isinstance(item, dict)]
        return OrderPage(items, int(body.get("total_count") or 0), response_date(response))

    async def orders_after(
        self,
        after: int,
        *,
        page_size: int,
        through: int | None = None,
        also: Sequence[int] = (),
    ) -> OrderPage:
        """Orders with `after < entity_id ≤ through`, oldest first, plus the orders `also`
        names (OR'ed into the same group: earlier failures retried at no extra request)."""
        first: list[Filter] = [("entity_id", "gt", str(after))]
        if also:
            first.append(("entity_id", "in", ",".join(str(i) for i in also)))
        groups: list[list[Filter]] = [first]
        if through is not None:
            groups.append([("entity_id", "lteq", str(through))])
        return await self.orders(groups, page_size=page_size)

    async def newest(self) -> OrderPage:
        """The order with the highest entity_id (and `total_count`, all orders)."""
        return await self.orders([], page_size=1, direction="DESC")

    async def store_codes(self) -> dict[int, tuple[str, int]]:
        """Store view id → (code, website id), from `GET /V1/store/storeViews` (pull §2.9)."""
        views = await self.http.get_json("/store/storeViews")
        return {
            int(view["id"]): (str(view["code"]), int(view.get("website_id") or 0))
            for view in views or []
            if isinstance(view, dict) and "id" in view and "code" in view
        }


class BadOrder(ValueError):
    """An order that cannot become a consumer; its text is the per-record failure message.

    `permanent` when reading the order again cannot help: an order's email never changes
    (Magento's "Edit order" makes a new order, with a new entity_id, which is read as new).
    Other reasons (a bad address) can be corrected in the shop and are retried.
    """

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


def magento_time(value: Any) -> datetime:
    """`"YYYY-MM-DD HH:MM:SS"` (UTC, no offset, pull §2.8) as aware UTC."""
    if not isinstance(value, str) or not value.strip():
        raise BadOrder("no created_at")
    try:
        when = datetime.fromisoformat(value.strip().replace(" ", "T"))
    except ValueError:
        raise BadOrder(f"unreadable created_at {value!r}") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def consumer_row(order: Mapping[str, Any], store_code: str | None) -> dict[str, Any]:
    """The seed's `convertOrderToConsumer`: the `consumer` columns for one order.

    Email: the order's `customer_email`, else the billing address's, trimmed and lower-cased.
    Names fall back to the billing address (old guest orders have none, pull §2.8).

    Raises:
        BadOrder: no email, an unreadable `created_at`, or a value wider than its column.
    """
    billing = order.get("billing_address") or {}
    email = _text(order.get("customer_email")) or _text(billing.get("email"))
    if email is None:
        raise BadOrder("no email", permanent=True)
    texts = {
        "email": email.lower(),
        "first_name": _text(order.get("customer_firstname")) or _text(billing.get("firstname")),
        "last_name": _text(order.get("customer_lastname")) or _text(billing.get("lastname")),
        "phone": _text(billing.get("telephone")),
        "country": _text(billing.get("country_id")),
        "city": _text(billing.get("city")),
    }
    country = texts["country"]
    if country is not None and len(country) != 2:
        raise BadOrder(f"country_id {country!r} is not an ISO 3166 two-letter code")
    for column, width in WIDTHS.items():
        value = texts[column]
        if value is not None and len(value) > width:
            raise BadOrder(f"{column} is longer than {width} characters")
    row: dict[str, Any] = {
        **texts,
        "store_code": store_code,
        "purchase_date": magento_time(order.get("created_at")),
        "order_entity_id": int(order["entity_id"]),
        "order_increment_id": _text(order.get("increment_id")),
    }
    return row
