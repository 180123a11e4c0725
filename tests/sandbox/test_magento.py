"""The Magento 2 sandbox answers like the documented REST API (shared/api/pull-providers §2)."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from starlette.requests import Request

from sandbox.magento import MagentoSandbox, create_app
from sandbox.magento_data import SPAN, day_start, generate, stamp
from sandbox.registry import create_app as registry_app
from tests.sandbox.conftest import Connect, connected

TOKEN = "magento-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NOW = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)  # the sandbox clock's start in these tests
SPEC = Path(__file__).resolve().parents[3] / "shared/specs/magento2-admin-rest-schema-2.4.9.yaml"
COPIED_SPEC = Path(__file__).with_name("magento_openapi_definitions.json")
ENTITY_ONLY = "items[entity_id],total_count"
Condition = tuple[str, str | None, str | None]  # field, value, condition_type


def shop(orders: int = 2_000, **options: Any) -> MagentoSandbox:
    """A sandbox whose clock starts at NOW (so its orders are the same on every day)."""
    sandbox: MagentoSandbox = create_app(TOKEN, orders=orders, now=NOW, **options).state.sandbox
    return sandbox


def in_process(sandbox: MagentoSandbox, **headers: str) -> Any:
    return connected("in-process", sandbox.app, headers={**AUTH, **headers})


def criteria(
    *groups: Sequence[Condition],
    sorts: Sequence[tuple[str, str | None]] = (),
    page_size: int | None = None,
    current_page: int | None = None,
    camel: bool = False,
) -> dict[str, str]:
    """`searchCriteria[...]` parameters; `camel` spells them as the OpenAPI does."""
    groups_key = "filterGroups" if camel else "filter_groups"
    condition_key = "conditionType" if camel else "condition_type"
    params: dict[str, str] = {}
    for g, group in enumerate(groups):
        for f, (field, value, condition) in enumerate(group):
            prefix = f"searchCriteria[{groups_key}][{g}][filters][{f}]"
            params[f"{prefix}[field]"] = field
            if value is not None:
                params[f"{prefix}[value]"] = value
            if condition is not None:
                params[f"{prefix}[{condition_key}]"] = condition
    for i, (field, direction) in enumerate(sorts):
        params[f"searchCriteria[sortOrders][{i}][field]"] = field
        if direction is not None:
            params[f"searchCriteria[sortOrders][{i}][direction]"] = direction
    if page_size is not None:
        params["searchCriteria[pageSize]"] = str(page_size)
    if current_page is not None:
        params["searchCriteria[currentPage]"] = str(current_page)
    return params or {"searchCriteria": ""}


async def orders(client: httpx.AsyncClient, path: str = "/rest/V1/orders", **params: Any) -> Any:
    response = await client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def entity_ids(client: httpx.AsyncClient, params: dict[str, str]) -> list[int]:
    """The ids a search finds, in order (input limits off: one answer holds them all)."""
    body = await orders(client, **params, fields=ENTITY_ONLY)
    ids = [item["entity_id"] for item in body["items"] or []]
    assert body["total_count"] == len(ids)
    return ids


def served(sandbox: MagentoSandbox, keep: Callable[[dict[str, Any]], bool]) -> list[int]:
    """Ids of the visible orders `keep` accepts, ascending: what a search should find."""
    return [o["entity_id"] for o in sandbox.iter_orders() if keep(o)]


def folded(email: str | None) -> str | None:
    return None if email is None else email.strip().lower()


# ---- authentication ------------------------------------------------------------------------------


async def test_orders_need_the_integration_token_or_a_live_admin_token(connect: Connect) -> None:
    sandbox = shop(orders=50)
    async with connect(sandbox.app) as client:
        missing = await client.get("/rest/V1/orders", params={"searchCriteria": ""})
        wrong = await client.get(
            "/rest/V1/orders", params={"searchCriteria": ""}, headers={"Authorization": "Bearer x"}
        )
        integration = await client.get(
            "/rest/V1/orders", params={"searchCriteria": ""}, headers=AUTH
        )
        issued = await client.post(
            "/rest/V1/integration/admin/token",
            json={"username": "admin", "password": "sandbox-admin-123"},
        )
        admin = {"Authorization": f"Bearer {issued.json()}"}
        fresh = await client.get("/rest/default/V1/store/websites", headers=admin)
        sandbox.clock.advance(4 * 3600 - 5)
        still = await client.get("/rest/V1/orders", params={"searchCriteria": ""}, headers=admin)
        sandbox.clock.advance(10)  # past the 4 hours of an admin token (pull §2.2)
        expired = await client.get("/rest/V1/orders", params={"searchCriteria": ""}, headers=admin)
        stores = await client.get("/rest/V1/store/storeViews", headers=admin)
    denied = {
        "message": "The consumer isn't authorized to access %resources.",
        "parameters": {"resources": "Magento_Sales::actions_view"},
    }
    assert [r.status_code for r in (missing, wrong, expired)] == [401, 401, 401]
    assert missing.json() == wrong.json() == expired.json() == denied
    assert stores.json()["parameters"] == {"resources": "Magento_Backend::store"}
    assert [r.status_code for r in (integration, issued, fresh, still)] == [200, 200, 200, 200]
    token = issued.json()
    assert isinstance(token, str)  # a bare JSON string
    assert len(token) == 32
    assert integration.json()["total_count"] == 50


async def test_the_token_route_refuses_wrong_passwords_and_with_2fa_every_password() -> None:
    plain, two_factor = shop(orders=5), shop(orders=5, two_factor=True)
    right = {"username": "admin", "password": "sandbox-admin-123"}
    wrong = {"username": "admin", "password": "guess"}
    async with in_process(plain) as client:
        bad = await client.post("/rest/V1/integration/admin/token", json=wrong)
        unknown = await client.post(
            "/rest/V1/integration/admin/token", json={**right, "username": "x"}
        )
        missing = await client.post("/rest/V1/integration/admin/token", json={"username": "admin"})
    async with in_process(two_factor) as client:
        refused = await client.post("/rest/V1/integration/admin/token", json=right)
        bad_2fa = await client.post("/rest/V1/integration/admin/token", json=wrong)
    sign_in = {
        "message": "The account sign-in was incorrect or your account is disabled temporarily. "
        "Please wait and try again later."
    }
    assert (bad.status_code, bad.json()) == (401, sign_in)
    assert (unknown.status_code, bad_2fa.status_code, bad_2fa.json()) == (401, 401, sign_in)
    assert (missing.status_code, missing.json()["parameters"]) == (400, {"fieldName": "password"})
    assert refused.status_code == 401
    assert refused.json() == {
        "message": "Please use the 2fa provider-specific endpoints to obtain a token.",
        "parameters": {"active_providers": ["google"]},
    }
    assert not plain.tokens
    assert not two_factor.tokens


async def test_routes_and_store_codes_magento_does_not_have_are_404_before_any_auth() -> None:
    sandbox = shop(orders=5)
    async with connected("in-process", sandbox.app) as client:  # no token at all
        answers = [
            await client.get("/rest/V1/nothing"),
            await client.get("/rest/nostore/V1/orders", params={"searchCriteria": ""}),
            await client.delete("/rest/V1/orders"),
            await client.get("/rest/V1/integration/admin/token"),
            await client.get("/V1/orders"),
        ]
    for answer in answers:
        assert (answer.status_code, answer.json()) == (
            404,
            {"message": "Request does not match any route."},
        ), answer.request.url


# ---- store scope, store views, websites ----------------------------------------------------------


async def test_a_store_code_in_the_path_does_not_scope_orders() -> None:
    sandbox = shop()
    every = criteria(page_size=300)
    async with in_process(sandbox) as client:
        plain = await orders(client, **every, fields=ENTITY_ONLY)
        scoped = {
            code: await orders(client, f"/rest/{code}/V1/orders", **every, fields=ENTITY_ONLY)
            for code in ("default", "us_es", "all", "admin")
        }
        stores = await orders(client, **every, fields="items[store_id]")
    for body in scoped.values():
        assert body == plain
    assert plain["total_count"] == 2_000
    assert {item["store_id"] for item in stores["items"]} == {1, 2, 3, 4}


async def test_store_views_and_websites_are_bare_arrays_that_map_store_to_website() -> None:
    sandbox = shop(orders=5)
    async with in_process(sandbox) as client:
        views = await orders(client, "/rest/V1/store/storeViews")
        websites = await orders(client, "/rest/us_en/V1/store/websites")
        trimmed = await orders(client, "/rest/V1/store/storeViews", fields="id,code")
    assert views == sandbox.store_views
    assert websites == sandbox.websites
    assert [v["code"] for v in views] == ["admin", "default", "nl", "us_en", "us_es"]
    assert {v["id"]: v["website_id"] for v in views} == {0: 0, 1: 1, 2: 1, 3: 2, 4: 2}
    assert [(w["id"], w["code"]) for w in websites] == [(0, "admin"), (1, "base"), (2, "us")]
    assert trimmed[1] == {"id": 1, "code": "default"}


# ---- searchCriteria ------------------------------------------------------------------------------


async def test_search_criteria_is_required_but_may_be_empty() -> None:
    sandbox = shop(orders=30)
    async with in_process(sandbox) as client:
        missing = await client.get("/rest/V1/orders")
        only_fields = await client.get("/rest/V1/orders", params={"fields": "total_count"})
        empty = await orders(client, searchCriteria="")
    assert (missing.status_code, missing.json()) == (
        400,
        {
            "message": "%fieldName is a required field.",
            "parameters": {"fieldName": "searchCriteria"},
        },
    )
    assert only_fields.status_code == 400
    assert (empty["total_count"], len(empty["items"])) == (30, 20)  # input limits: 20 a page


CONDITIONS: dict[str, tuple[Condition, Callable[[dict[str, Any]], bool]]] = {
    "eq by default": (("store_id", "3", None), lambda o: o["store_id"] == 3),
    "eq": (("status", "complete", "eq"), lambda o: o["status"] == "complete"),
    "neq": (("status", "complete", "neq"), lambda o: o["status"] != "complete"),
    "gt": (("entity_id", "1500", "gt"), lambda o: o["entity_id"] > 1500),
    "gteq": (("entity_id", "1500", "gteq"), lambda o: o["entity_id"] >= 1500),
    "lt": (("entity_id", "300", "lt"), lambda o: o["entity_id"] < 300),
    "lteq": (("entity_id", "300", "lteq"), lambda o: o["entity_id"] <= 300),
    "in": (("store_id", "1, 3", "in"), lambda o: o["store_id"] in (1, 3)),
    "nin": (("store_id", "1,3", "nin"), lambda o: o["store_id"] not in (1, 3)),
    "like": (
        ("customer_email", "%@EXAMPLE.org", "like"),  # case-insensitive, trailing space counts
        lambda o: (o["customer_email"] or "").lower().endswith("@example.org"),
    ),
    "nlike": (
        ("customer_email", "%@example.org", "nlike"),  # SQL: a null email matches neither
        lambda o: (
            o["customer_email"] is not None
            and not o["customer_email"].lower().endswith("@example.org")
        ),
    ),
    "from": (
        ("created_at", "2026-01-01 00:00:00", "from"),
        lambda o: o["created_at"] >= "2026-01-01 00:00:00",
    ),
    "to": (("created_at", "2025-06-30", "to"), lambda o: o["created_at"] <= "2025-06-30 00:00:00"),
    "moreq": (("grand_total", "100", "moreq"), lambda o: o["grand_total"] >= 100),
    "null": (("customer_id", None, "null"), lambda o: "customer_id" not in o),
    "notnull": (("customer_email", "1", "notnull"), lambda o: o["customer_email"] is not None),
    "finset": (("status", "canceled", "finset"), lambda o: o["status"] == "canceled"),
}


@pytest.mark.parametrize("name", CONDITIONS)
async def test_each_condition_type_selects_what_magento_would(name: str) -> None:
    sandbox = shop(input_limits=False)
    condition, keep = CONDITIONS[name]
    async with in_process(sandbox) as client:
        found = await entity_ids(client, criteria([condition]))
    expected = served(sandbox, keep)
    assert found == expected
    assert 0 < len(found) < 2_000


async def test_text_compares_like_mysql_general_ci_and_times_as_datetimes() -> None:
    sandbox = shop(input_limits=False)
    shouted = next(o for o in sandbox.iter_orders() if (o["customer_email"] or "").endswith(" "))
    clean = folded(shouted["customer_email"])
    assert clean is not None
    created = shouted["created_at"]
    async with in_process(sandbox) as client:
        by_email = await entity_ids(client, criteria([("customer_email", clean.upper(), None)]))
        same_second = await entity_ids(client, criteria([("created_at", created, "eq")]))
        iso = await entity_ids(
            client, criteria([("created_at", created.replace(" ", "T") + "Z", "eq")])
        )
        not_a_time = await entity_ids(client, criteria([("created_at", "soon", "gt")]))
    # Case and trailing spaces do not count (PAD SPACE); a leading space does.
    assert by_email == served(
        sandbox, lambda o: (o["customer_email"] or "").lower().rstrip(" ") == clean
    )
    assert shouted["entity_id"] in by_email
    assert same_second == iso == served(sandbox, lambda o: o["created_at"] == created)
    assert not_a_time == []


async def test_filters_in_a_group_are_ored_and_groups_are_anded() -> None:
    sandbox = shop(input_limits=False)
    either = [("store_id", "1", "eq"), ("store_id", "3", "eq")]
    async with in_process(sandbox) as client:
        ored = await entity_ids(client, criteria(either))
        anded = await entity_ids(client, criteria(either, [("status", "complete", None)]))
        nothing = await entity_ids(
            client, criteria([("store_id", "1", None)], [("store_id", "3", None)])
        )
        camel = await entity_ids(
            client, criteria(either, [("status", "complete", None)], camel=True)
        )
    assert ored == served(sandbox, lambda o: o["store_id"] in (1, 3))
    assert (
        anded
        == camel
        == served(sandbox, lambda o: o["store_id"] in (1, 3) and o["status"] == "complete")
    )
    assert nothing == []


async def test_a_sort_order_without_direction_is_descending() -> None:
    sandbox = shop(input_limits=False)
    async with in_process(sandbox) as client:
        unsorted = await entity_ids(client, criteria())
        default = await entity_ids(client, criteria(sorts=[("entity_id", None)]))
        ascending = await entity_ids(client, criteria(sorts=[("entity_id", "asc")]))
        by_time = await orders(
            client,
            **criteria(sorts=[("store_id", "ASC"), ("created_at", None)]),
            fields="items[entity_id,store_id,created_at]",
        )
    everything = served(sandbox, lambda _: True)
    assert unsorted == ascending == everything  # no sortOrders: primary-key order
    assert default == everything[::-1]
    keys = [(o["store_id"], o["created_at"]) for o in by_time["items"]]
    assert keys == sorted(keys, key=lambda k: (k[0], _negated(k[1])))


def _negated(stamp_text: str) -> list[int]:
    return [-ord(c) for c in stamp_text]


async def test_page_size_is_capped_at_300_and_defaults_to_20_with_input_limits() -> None:
    limited, open_ = shop(), shop(input_limits=False)
    async with in_process(limited) as client:
        over = await client.get("/rest/V1/orders", params=criteria(page_size=301))
        full = await orders(client, **criteria(page_size=300), fields=ENTITY_ONLY)
        default = await orders(client, **criteria(current_page=3), fields=ENTITY_ONLY)
        unreadable = await client.get("/rest/V1/orders", params={"searchCriteria[pageSize]": "ten"})
    async with in_process(open_) as client:
        everything = await orders(client, **criteria(), fields=ENTITY_ONLY)
        big = await orders(client, **criteria(page_size=1_000), fields=ENTITY_ONLY)
    assert (over.status_code, over.json()) == (
        400,
        {"message": "Maximum SearchCriteria pageSize is 300"},
    )
    assert len(full["items"]) == 300
    assert [o["entity_id"] for o in default["items"]] == served(limited, lambda _: True)[40:60]
    assert default["total_count"] == 2_000
    assert unreadable.status_code == 400
    assert 'The "ten" value\'s type is invalid' in unreadable.json()["message"]
    assert (len(everything["items"]), len(big["items"])) == (2_000, 1_000)


@pytest.mark.parametrize(("version", "last_again"), [("2.4", False), ("2.3", True)])
async def test_past_the_last_page(version: str, last_again: bool) -> None:
    sandbox = shop(orders=250, version=version)
    async with in_process(sandbox) as client:
        pages = [
            await orders(
                client, **criteria(sorts=[("entity_id", "ASC")], page_size=100, current_page=n)
            )
            for n in (3, 4, 9)
        ]
    last, beyond, far = pages
    assert [p["total_count"] for p in pages] == [250, 250, 250]
    assert len(last["items"]) == 50
    if last_again:  # ≤ 2.3: the collection clamps to the last page (pull §2.5)
        assert beyond["items"] == far["items"] == last["items"]
    else:
        assert beyond["items"] == far["items"] == []


async def test_a_keyset_walk_reads_every_order_once_without_scanning(
    connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox = shop()

    def scan(*args: Any) -> list[int]:
        raise AssertionError("a keyset page scanned the orders")

    monkeypatch.setattr(sandbox.shop, "_select", scan)
    seen: list[int] = []
    async with connect(sandbox.app, headers=AUTH) as client:
        while True:
            params = criteria(
                [("entity_id", str(seen[-1] if seen else 0), "gt")],
                sorts=[("entity_id", "ASC")],
                page_size=300,
                current_page=1,
            )
            body = await orders(client, **params, fields=ENTITY_ONLY)
            seen += [o["entity_id"] for o in body["items"] or []]
            if not body["items"] or len(body["items"]) < 300:
                break
        newest = await orders(client, **criteria(sorts=[("entity_id", "DESC")], page_size=1))
    assert seen == served(sandbox, lambda _: True)
    assert len(seen) == 2_000
    assert newest["items"][0]["entity_id"] == seen[-1]


async def test_search_criteria_is_echoed_with_string_values() -> None:
    sandbox = shop(orders=40)
    params = criteria(
        [("entity_id", "12", "gt"), ("store_id", "3", None)],
        sorts=[("created_at", None)],
        page_size=5,
        current_page=2,
        camel=True,
    )
    async with in_process(sandbox) as client:
        body = await orders(client, **params)
    assert body["search_criteria"] == {
        "filter_groups": [
            {
                "filters": [
                    {"field": "entity_id", "value": "12", "condition_type": "gt"},
                    {"field": "store_id", "value": "3"},
                ]
            }
        ],
        "sort_orders": [{"field": "created_at", "direction": None}],  # required, so null
        "page_size": 5,
        "current_page": 2,
    }


async def test_magento_refuses_bad_sort_orders_and_fails_on_unknown_columns() -> None:
    sandbox = shop(orders=10)
    async with in_process(sandbox) as client:
        direction = await client.get(
            "/rest/V1/orders", params=criteria(sorts=[("entity_id", "UP")])
        )
        symbols = await client.get(
            "/rest/V1/orders", params=criteria(sorts=[("entity_id;", "ASC")])
        )
        column = await client.get("/rest/V1/orders", params=criteria([("colour", "red", None)]))
        nested = await client.get(
            "/rest/V1/orders", params=criteria([("billing_address.city", "Gent", None)])
        )
    assert direction.status_code == symbols.status_code == 400
    assert direction.json()["parameters"] == ["ASC", "DESC"]
    assert symbols.json() == {
        "message": "Sort order field %1 contains restricted symbols",
        "parameters": ["entity_id;"],
    }
    for failed in (column, nested):
        assert failed.status_code == 500
        assert failed.json()["message"].startswith(
            "Internal Error. Details are available in Magento log file. Report ID: webapi-"
        )


# ---- fields= -------------------------------------------------------------------------------------


async def test_fields_keeps_only_the_listed_keys_at_every_level() -> None:
    sandbox = shop(orders=60)
    wanted = "items[entity_id,customer_email,billing_address[city,telephone]],total_count"
    async with in_process(sandbox) as client:
        body = await orders(client, **criteria(page_size=60), fields=wanted)
        empty = await orders(client, **criteria([("entity_id", "1000", "gt")]), fields=wanted)
        plain_empty = await orders(client, **criteria([("entity_id", "1000", "gt")]))
        malformed = await orders(client, **criteria(), fields="items[entity_id")
        unknown = await orders(client, **criteria(), fields="nothing_here")
        blank = await orders(client, **criteria(page_size=1), fields="")
    assert set(body) == {"items", "total_count"}
    assert len(body["items"]) == 60
    for item in body["items"]:
        assert set(item) == {"entity_id", "customer_email", "billing_address"}
        assert set(item["billing_address"]) == {"city", "telephone"}
    # FieldsFilter quirks: an empty list under a nested filter is null, a bad filter is [].
    assert empty == {"items": None, "total_count": 0}
    assert plain_empty["items"] == []
    assert malformed == unknown == []
    assert set(blank) == {"items", "search_criteria", "total_count"}


# ---- the generated shop --------------------------------------------------------------------------


def test_the_generated_shop_has_the_orders_a_consumer_sync_must_handle() -> None:
    sandbox = shop()
    every = list(sandbox.iter_orders())
    ids = [o["entity_id"] for o in every]
    assert ids == sorted(ids)
    assert len(set(ids)) == 2_000
    assert any(b - a > 1 for a, b in pairwise(ids))  # a few gaps
    times = [o["created_at"] for o in every]
    ascending = sum(a <= b for a, b in pairwise(times)) / (len(times) - 1)
    assert 0.97 < ascending < 1  # ids are allocated at insert: roughly, not strictly
    start = day_start(NOW.timestamp())
    assert stamp(start - SPAN) <= min(times)
    assert max(times) < stamp(start)

    guests = [o for o in every if o["customer_is_guest"] == 1]
    customers = [o for o in every if o["customer_is_guest"] == 0]
    assert all("customer_id" not in o and o["customer_group_id"] == 0 for o in guests)
    assert all(isinstance(o["customer_id"], int) for o in customers)
    assert 0.2 < len(guests) / len(every) < 0.7
    nameless = [o for o in guests if "customer_firstname" not in o]
    assert nameless
    assert all(o["billing_address"]["firstname"] for o in nameless)

    no_email = [o for o in every if o["customer_email"] is None]
    assert 0 < len(no_email) < 30
    assert all("email" not in o["billing_address"] for o in no_email)
    raw = [o["customer_email"] for o in every if o["customer_email"] is not None]
    assert any(e != e.strip() for e in raw)
    assert any(e != e.lower() for e in raw)

    by_email: dict[str, list[str]] = defaultdict(list)
    for o in every:
        if (email := folded(o["customer_email"])) is not None:
            by_email[email].append(o["created_at"])
    assert sum(len(set(dates)) > 1 for dates in by_email.values()) > 100  # repeat buyers
    pairs = Counter((email, when) for email, dates in by_email.items() for when in dates)
    assert 5 < sum(n > 1 for n in pairs.values()) < 60  # same email, same second

    stores = Counter(o["store_id"] for o in every)
    assert set(stores) == {1, 2, 3, 4}
    assert min(stores.values()) > 100
    assert {o["order_currency_code"] for o in every} == {"EUR", "USD"}
    for o in every:
        billing = o["billing_address"]
        assert billing["telephone"]
        assert billing["city"]
        assert len(billing["country_id"]) == 2
        assert isinstance(billing["street"], list)
        assert billing["parent_id"] == o["entity_id"]
        assert o["items"]
        assert o["grand_total"] > 0


def test_a_seed_gives_the_same_shop_and_another_seed_another() -> None:
    end = day_start(NOW.timestamp())
    first, again, other = generate(500, 7, end), generate(500, 7, end), generate(500, 8, end)
    assert [first.order(i) for i in range(500)] == [again.order(i) for i in range(500)]
    assert [first.order(i) for i in range(500)] != [other.order(i) for i in range(500)]
    later = shop(orders=500, seed=7)
    later.clock.advance(3_600)  # the clock moves on; generated history stays put
    assert list(later.iter_orders()) == [first.order(i) for i in range(500)]


# ---- mutations -----------------------------------------------------------------------------------


async def test_added_orders_get_new_ids_and_the_clocks_time() -> None:
    sandbox = shop(orders=100)
    top = max(o["entity_id"] for o in sandbox.iter_orders())
    sandbox.clock.set(NOW + timedelta(hours=1))
    new = sandbox.add_orders(3, email=" New.Buyer@Example.com")
    backdated = sandbox.add_orders(1, created_at=NOW - timedelta(days=1), status="canceled")
    anonymous = sandbox.add_orders(1, customer_email=None, customer_is_guest=1, store_id=4)
    async with in_process(sandbox) as client:
        body = await orders(
            client, **criteria([("entity_id", str(top), "gt")], sorts=[("entity_id", "ASC")])
        )
    items = {o["entity_id"]: o for o in body["items"]}
    assert new == [top + 1, top + 2, top + 3]
    assert backdated == [top + 4]
    assert list(items) == [*new, *backdated, *anonymous]
    assert {items[i]["customer_email"] for i in new} == {" New.Buyer@Example.com"}
    assert {items[i]["created_at"] for i in new} == {"2026-06-01 13:00:00"}
    assert (items[top + 4]["created_at"], items[top + 4]["state"]) == (
        "2026-05-31 12:00:00",
        "canceled",
    )
    lone = items[anonymous[0]]
    assert (lone["customer_email"], lone["customer_is_guest"], lone["store_id"]) == (None, 1, 4)
    assert sandbox.order(new[0]) == items[new[0]]


async def test_an_order_committed_late_appears_below_the_watermark() -> None:
    sandbox = shop(orders=100)
    top = max(o["entity_id"] for o in sandbox.iter_orders())
    late = sandbox.add_orders(1, visible=False)  # its id is taken, its transaction still open
    later = sandbox.add_orders(2)
    after_top = criteria([("entity_id", str(top), "gt")], sorts=[("entity_id", "ASC")])
    async with in_process(sandbox) as client:
        before = await orders(client, **after_top, fields=ENTITY_ONLY)
        watermark = later[-1]
        sandbox.reveal(late)
        past_watermark = await orders(
            client, **criteria([("entity_id", str(watermark), "gt")]), fields=ENTITY_ONLY
        )
        overlap = await orders(client, **after_top, fields=ENTITY_ONLY)
    assert late[0] < later[0]
    assert [o["entity_id"] for o in before["items"]] == later
    assert past_watermark == {"items": None, "total_count": 0}  # a keyset walk never sees it
    assert [o["entity_id"] for o in overlap["items"]] == [*late, *later]
    assert [o["entity_id"] for o in sandbox.iter_orders()][-3:] == [*late, *later]


async def test_updates_and_changes_during_a_walk_show_up_in_later_pages() -> None:
    sandbox = shop(orders=700)
    sandbox.clock.set(NOW + timedelta(days=1))
    fifth = [o["entity_id"] for o in sandbox.iter_orders()][4]
    sandbox.update_order(fifth, status="complete", billing_address={"city": "Gent"})
    calls: list[str] = []

    def meanwhile(request: Request) -> None:
        if request.url.path.endswith("/orders"):
            calls.append(request.url.path)
            if len(calls) == 2:
                sandbox.add_orders(2)

    sandbox.on_request(meanwhile)
    seen: list[int] = []
    async with in_process(sandbox) as client:
        changed = await orders(
            client, **criteria([("updated_at", "2026-06-02 00:00:00", "gteq")]), fields="items"
        )
        while True:
            params = criteria(
                [("entity_id", str(seen[-1] if seen else 0), "gt")],
                sorts=[("entity_id", "ASC")],
                page_size=300,
            )
            page = (await orders(client, **params, fields=ENTITY_ONLY))["items"] or []
            seen += [o["entity_id"] for o in page]
            if len(page) < 300:
                break
    (order,) = changed["items"]
    assert (order["entity_id"], order["status"], order["state"]) == (fifth, "complete", "complete")
    assert (order["billing_address"]["city"], order["updated_at"]) == (
        "Gent",
        "2026-06-02 12:00:00",
    )
    assert len(seen) == 702
    assert seen == sorted(seen)


# ---- serving it ----------------------------------------------------------------------------------


async def test_the_registry_builds_it_with_the_cli_options_and_no_limit_by_default() -> None:
    options = {"latency": 0.0, "jitter": 0.0, "scale": 1.0, "seed": 3}
    sandbox = registry_app("magento", api_key="k", per_second=None, orders=25, **options)
    assert isinstance(sandbox.state.sandbox, MagentoSandbox)
    assert (sandbox.state.sandbox.api_key, len(sandbox.state.sandbox.shop)) == ("k", 25)
    assert sandbox.state.sandbox.limits == []  # Magento has no read rate limit (pull §2.7)
    limited = registry_app("magento", api_key=TOKEN, per_second=1, preset="default")
    assert len(limited.state.sandbox.shop) == 2_000
    async with in_process(limited.state.sandbox) as client:
        answers = [await client.get("/rest/V1/store/websites") for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 429]
    assert answers[1].json() == {"message": "Too Many Requests", "trace": None}


# ---- the official OpenAPI ------------------------------------------------------------------------

# Required fields Magento serves as null (its serializer writes required getters even when
# null): an order without an email (real shops have them, from imports) and the card fields
# of offline payment methods.
NULLABLE = {
    ("sales-data-order-interface", "customer_email"),
    ("sales-data-order-payment-interface", "account_status"),
    ("sales-data-order-payment-interface", "cc_last4"),
}
JSON_TYPES: dict[str, Callable[[Any], bool]] = {
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
}


@pytest.fixture(scope="module")
def definitions() -> dict[str, Any]:
    """The order, search result, store view and website schemas of the official OpenAPI, from
    the copy beside this file (the shared specs folder is not part of a clone); where the
    original is at hand, the copy must still match it."""
    copied: dict[str, Any] = json.loads(COPIED_SPEC.read_text())["definitions"]
    if SPEC.exists():
        with SPEC.open() as file:
            loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
            original = yaml.load(file, Loader=loader)["definitions"]
        assert {name: original[name] for name in copied} == copied
    return copied


def violations(
    value: Any, schema: dict[str, Any], defs: dict[str, Any], where: str = "$", name: str = ""
) -> list[str]:
    """Where `value` breaks `schema`: required keys, JSON types, keys the spec lacks, and null
    optional fields (Magento leaves those out)."""
    if "$ref" in schema:
        ref = schema["$ref"].rsplit("/", 1)[-1]
        return violations(value, defs[ref], defs, where, ref)
    kind = schema.get("type", "object")
    if kind == "array":
        if not isinstance(value, list):
            return [f"{where}: not an array"]
        return [
            p
            for n, v in enumerate(value)
            for p in violations(v, schema["items"], defs, f"{where}[{n}]")
        ]
    if kind != "object":
        return [] if JSON_TYPES[kind](value) else [f"{where}: {value!r} is not {kind}"]
    if not isinstance(value, dict):
        return [f"{where}: not an object"]
    problems = []
    required, properties = set(schema.get("required", ())), schema.get("properties", {})
    for key in sorted(required - set(value)):
        problems.append(f"{where}.{key}: required, missing")
    for key, item in value.items():
        at = f"{where}.{key}"
        if key not in properties:
            problems.append(f"{at}: not in {name or 'the schema'}")
        elif item is None:
            if key not in required or (name, key) not in NULLABLE:
                problems.append(f"{at}: null")
        else:
            problems += violations(item, properties[key], defs, at)
    return problems


async def test_served_orders_and_search_results_validate_against_the_openapi(
    definitions: dict[str, Any],
) -> None:
    sandbox = shop(orders=400)
    every = list(sandbox.iter_orders())
    kinds = {
        "customer": next(o for o in every if o["customer_is_guest"] == 0),
        "nameless guest": next(o for o in every if "customer_firstname" not in o),
        "no email": next(o for o in every if o["customer_email"] is None),
        "canceled": next(o for o in every if o["status"] == "canceled"),
        "us": next(o for o in every if o["store_id"] == 3),
    }
    params = criteria(
        [("created_at", "2026-01-01", "gteq"), ("store_id", "1,2", "in")],
        [("status", "%e", "like")],
        sorts=[("created_at", "DESC"), ("entity_id", "ASC")],
        page_size=50,
        current_page=2,
    )
    async with in_process(sandbox) as client:
        result = await orders(client, **params)
        views = await orders(client, "/rest/V1/store/storeViews")
        websites = await orders(client, "/rest/V1/store/websites")
    order = definitions["sales-data-order-interface"]
    for label, served_order in kinds.items():
        assert (
            violations(served_order, order, definitions, name="sales-data-order-interface") == []
        ), label
    assert result["items"]
    assert result["total_count"] > 50
    search = definitions["sales-data-order-search-result-interface"]
    assert violations(result, search, definitions) == []
    store = {"type": "array", "items": {"$ref": "#/definitions/store-data-store-interface"}}
    website = {"type": "array", "items": {"$ref": "#/definitions/store-data-website-interface"}}
    assert violations(views, store, definitions) == violations(websites, website, definitions) == []
