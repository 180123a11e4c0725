"""The MailerLite sandbox answers like the documented new API (shared/api/push-providers §1)."""

from __future__ import annotations

import base64
import json
from typing import Any

from sandbox.limits import RateLimit
from sandbox.mailerlite import MailerLiteSandbox, create_app, field_key
from sandbox.registry import create_app as registry_app
from tests.sandbox.conftest import connected

KEY = "mailerlite-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
INVALID = "The given data was invalid."
IMPORT_LIMITED = {"message": "You're being rate limited on import creation."}


def account(**options: Any) -> MailerLiteSandbox:
    """A sandbox without the account limit unless asked for, so only the test's subject counts."""
    options.setdefault("per_minute", None)
    sandbox: MailerLiteSandbox = create_app(KEY, **options).state.sandbox
    return sandbox


def in_process(sandbox: MailerLiteSandbox) -> Any:
    return connected("in-process", sandbox.app, headers=AUTH)


def upsert(email: str, **body: Any) -> dict[str, Any]:
    """One batch item upserting `email`."""
    return {"method": "POST", "path": "api/subscribers", "body": {"email": email, **body}}


def group_ids(sandbox: MailerLiteSandbox) -> list[str]:
    return list(sandbox.groups)


# ---- auth and the registry -----------------------------------------------------------------------


async def test_every_route_wants_the_bearer_key() -> None:
    sandbox = account()
    async with connected("in-process", sandbox.app) as client:
        missing = await client.get("/api/subscribers")
        wrong = await client.post(
            "/api/subscribers",
            json={"email": "a@example.com"},
            headers={"Authorization": "Bearer x"},
        )
        right = await client.get("/api/groups", headers=AUTH)
    assert (missing.status_code, missing.json()) == (401, {"message": "Unauthenticated."})
    assert (wrong.status_code, wrong.json()) == (401, {"message": "Unauthenticated."})
    assert right.status_code == 200
    assert sandbox.subscribers == {}


def test_the_registry_builds_it_with_cli_options() -> None:
    sandbox = registry_app("mailerlite", api_key="k", per_second=3, scale=60).state.sandbox
    assert isinstance(sandbox, MailerLiteSandbox)
    assert (sandbox.api_key, sandbox.clock.scale) == ("k", 60)
    (limit,) = sandbox.limits
    assert isinstance(limit, RateLimit)
    assert [w.limit for w in limit.windows] == [120, 3]


# ---- upsert --------------------------------------------------------------------------------------


async def test_upsert_answers_201_when_created_then_200_for_the_same_email_in_any_case() -> None:
    sandbox = account()
    async with in_process(sandbox) as client:
        created = await client.post("/api/subscribers", json={"email": "Ann@Example.com"})
        updated = await client.post("/api/subscribers", json={"email": "ann@example.COM"})
    assert (created.status_code, updated.status_code) == (201, 200)
    first, second = created.json()["data"], updated.json()["data"]
    assert first["id"] == second["id"]
    assert first["id"].isdigit()
    assert (first["email"], first["status"], first["groups"]) == ("ann@example.com", "active", [])
    assert first["fields"] == dict.fromkeys(
        ("name", "last_name", "company", "country", "city", "phone", "state", "z_i_p")
    )
    assert list(sandbox.subscribers) == ["ann@example.com"]
    assert sandbox.subscriber("ANN@example.com") == second


async def test_upsert_merges_fields_and_adds_groups_without_removing_any() -> None:
    sandbox = account()
    first_group, second_group, _ = group_ids(sandbox)
    async with in_process(sandbox) as client:
        await client.post(
            "/api/subscribers",
            json={
                "email": "bo@example.com",
                "fields": {"name": "Bo", "city": "Gent"},
                "groups": [first_group],
            },
        )
        response = await client.post(
            "/api/subscribers",
            json={
                "email": "bo@example.com",
                "fields": {"city": "Antwerpen"},
                "groups": [second_group],
            },
        )
    data = response.json()["data"]
    assert response.status_code == 200
    assert (data["fields"]["name"], data["fields"]["city"]) == ("Bo", "Antwerpen")
    assert [g["id"] for g in data["groups"]] == [first_group, second_group]
    assert data["groups"][0]["active_count"] == 1


async def test_upsert_refuses_bad_input_with_laravel_422_bodies() -> None:
    sandbox = account()
    async with in_process(sandbox) as client:
        missing = await client.post("/api/subscribers", json={"fields": {"name": "X"}})
        bad = await client.post("/api/subscribers", json={"email": "not-an-email"})
        field = await client.post(
            "/api/subscribers", json={"email": "c@example.com", "fields": {"shoe_size": 42}}
        )
        group = await client.post(
            "/api/subscribers", json={"email": "c@example.com", "groups": ["999"]}
        )
    assert [r.status_code for r in (missing, bad, field, group)] == [422] * 4
    assert missing.json() == {
        "message": INVALID,
        "errors": {"email": ["The email field is required."]},
    }
    assert bad.json() == {
        "message": INVALID,
        "errors": {"email": ["The email must be a valid email address."]},
    }
    assert list(field.json()["errors"]) == ["fields.shoe_size"]
    assert list(group.json()["errors"]) == ["groups.0"]
    assert sandbox.subscribers == {}  # a refused upsert changes nothing


async def test_an_unsubscribed_subscriber_stays_unsubscribed() -> None:
    sandbox = account()
    async with in_process(sandbox) as client:
        await client.post("/api/subscribers", json={"email": "d@example.com"})
        sandbox.unsubscribe("d@example.com")
        merged = await client.post(
            "/api/subscribers", json={"email": "d@example.com", "fields": {"name": "Dee"}}
        )
        reactivated = await client.post(
            "/api/subscribers", json={"email": "d@example.com", "status": "active"}
        )
    assert merged.status_code == 200
    assert (merged.json()["data"]["status"], merged.json()["data"]["fields"]["name"]) == (
        "unsubscribed",
        "Dee",
    )
    assert reactivated.status_code == 422
    assert reactivated.json()["errors"] == {
        "status": ["This subscriber is unsubscribed and cannot be imported"]
    }
    record = sandbox.subscriber("d@example.com")
    assert record is not None
    assert record["status"] == "unsubscribed"
    assert record["unsubscribed_at"] is not None


# ---- reading subscribers -------------------------------------------------------------------------


async def test_cursor_pages_return_every_subscriber_exactly_once() -> None:
    sandbox = account()
    seen: list[str] = []
    async with in_process(sandbox) as client:
        for n in range(120):
            await client.post("/api/subscribers", json={"email": f"user{n}@example.com"})
        params: dict[str, Any] = {"limit": 50}
        pages = 0
        while True:
            body = (await client.get("/api/subscribers", params=params)).json()
            pages += 1
            seen += [s["email"] for s in body["data"]]
            assert body["meta"]["per_page"] == 50
            cursor = body["meta"]["next_cursor"]
            if cursor is None:
                assert body["links"]["next"] is None
                break
            assert body["links"]["next"].endswith(f"/api/subscribers?cursor={cursor}")
            decoded = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
            assert decoded["_pointsToNextItems"] is True
            params = {"limit": 50, "cursor": cursor}
        default = (await client.get("/api/subscribers")).json()
        bad = await client.get("/api/subscribers", params={"cursor": "nonsense"})
    assert pages == 3
    assert sorted(seen) == sorted(f"user{n}@example.com" for n in range(120))
    assert len(default["data"]) == 25
    assert bad.status_code == 422


async def test_a_subscriber_is_found_by_id_or_email_else_404() -> None:
    sandbox = account()
    async with in_process(sandbox) as client:
        created = (await client.post("/api/subscribers", json={"email": "e@example.com"})).json()
        by_id = await client.get(f"/api/subscribers/{created['data']['id']}")
        by_email = await client.get("/api/subscribers/E@example.com")
        unknown = await client.get("/api/subscribers/1")
    assert by_id.json() == by_email.json() == created
    assert (unknown.status_code, unknown.json()) == (
        404,
        {"message": "No query results for model [App\\Models\\Subscriber\\Subscriber]."},
    )


# ---- fields and groups ---------------------------------------------------------------------------


def test_field_keys_are_laravel_snake_slugs() -> None:
    assert field_key("My Field") == "my_field"
    assert field_key("ZIP") == "z_i_p"
    assert field_key("last_name") == "last_name"
    assert field_key("lifetime value") == "lifetime_value"


async def test_a_created_field_is_keyed_by_slug_and_a_duplicate_name_is_422() -> None:
    sandbox = account()
    async with in_process(sandbox) as client:
        created = await client.post("/api/fields", json={"name": "Order Total", "type": "number"})
        again = await client.post("/api/fields", json={"name": "order total", "type": "text"})
        bad_type = await client.post("/api/fields", json={"name": "Shoe", "type": "colour"})
        listed = (await client.get("/api/fields", params={"limit": 100})).json()
        used = await client.post(
            "/api/subscribers", json={"email": "f@example.com", "fields": {"order_total": 12}}
        )
    data = created.json()["data"]
    assert created.status_code == 201
    assert (data["key"], data["type"], data["is_default"]) == ("order_total", "number", False)
    assert data["id"].isdigit()
    assert again.status_code == 422
    assert again.json()["errors"] == {"name": ["The name has already been taken."]}
    assert list(bad_type.json()["errors"]) == ["type"]
    assert [f["key"] for f in listed["data"]][-2:] == ["z_i_p", "order_total"]
    assert listed["meta"]["total"] == 9
    assert used.json()["data"]["fields"]["order_total"] == 12


async def test_groups_are_listed_with_digit_string_ids_and_filtered_by_name() -> None:
    sandbox = account()
    async with in_process(sandbox) as client:
        listed = (await client.get("/api/groups")).json()
        filtered = (await client.get("/api/groups", params={"filter[name]": "news"})).json()
        created = await client.post("/api/groups", json={"name": "Trial"})
    assert len(listed["data"]) == 3
    assert all(g["id"].isdigit() for g in listed["data"])
    assert [g["name"] for g in filtered["data"]] == ["Newsletter"]
    assert created.status_code == 201
    assert created.json()["data"]["id"] in sandbox.groups


# ---- batch ---------------------------------------------------------------------------------------


async def test_a_batch_takes_50_requests_and_refuses_51() -> None:
    sandbox = account()
    async with in_process(sandbox) as client:
        fifty = await client.post(
            "/api/batch", json={"requests": [upsert(f"b{n}@example.com") for n in range(50)]}
        )
        too_many = await client.post(
            "/api/batch", json={"requests": [upsert(f"x{n}@example.com") for n in range(51)]}
        )
    assert fifty.status_code == 200
    assert (fifty.json()["total"], fifty.json()["successful"], fifty.json()["failed"]) == (
        50,
        50,
        0,
    )
    assert {r["code"] for r in fifty.json()["responses"]} == {201}
    assert too_many.status_code == 422
    assert too_many.json() == {
        "message": INVALID,
        "errors": {"requests": ["The requests must not have more than 50 items."]},
    }
    assert len(sandbox.subscribers) == 50


async def test_a_batch_answers_each_item_in_order_and_200_despite_failures() -> None:
    sandbox = account()
    requests = [
        upsert("g@example.com"),
        upsert("not-an-email"),
        {"method": "GET", "path": "api/subscribers/g@example.com"},
        {"method": "GET", "path": "api/campaigns/list"},
    ]
    async with in_process(sandbox) as client:
        response = await client.post("/api/batch", json={"requests": requests})
        envelope = await client.post(
            "/api/batch", json={"requests": [{"method": "FETCH", "path": "subscribers"}]}
        )
    body = response.json()
    assert response.status_code == 200
    assert [r["code"] for r in body["responses"]] == [201, 422, 200, 404]
    assert (body["total"], body["successful"], body["failed"]) == (4, 2, 2)
    assert body["responses"][3]["body"] == {
        "message": "The route api/campaigns/list could not be found."
    }
    assert envelope.status_code == 422
    assert set(envelope.json()["errors"]) == {"requests.0.method", "requests.0.path"}


async def test_the_sixth_import_in_a_minute_gets_the_import_429_but_mixed_batches_pass() -> None:
    # A sandbox minute is 10 real seconds: room for a loaded machine, still no real waiting.
    sandbox = account(scale=6)
    mixed = {"requests": [upsert("m@example.com"), {"method": "GET", "path": "api/groups"}]}
    async with in_process(sandbox) as client:
        imports = [
            await client.post("/api/batch", json={"requests": [upsert(f"i{n}@example.com")]})
            for n in range(6)
        ]
        mixed_answer = await client.post("/api/batch", json=mixed)
        sandbox.clock.advance(60)
        later = await client.post("/api/batch", json={"requests": [upsert("late@example.com")]})
    assert [r.status_code for r in imports] == [200] * 5 + [429]
    assert imports[5].json() == IMPORT_LIMITED
    assert 0 < float(imports[5].headers["retry-after"]) <= 10.0  # real seconds at scale 6
    assert "i5@example.com" not in sandbox.subscribers  # the whole batch was refused
    assert mixed_answer.status_code == 200
    assert later.status_code == 200


# ---- account limit -------------------------------------------------------------------------------


async def test_the_account_allows_120_a_minute_with_headers_and_retry_after() -> None:
    sandbox = account(per_minute=120, scale=6)  # 121 requests well inside 10 real seconds
    inner = [upsert(f"r{n}@example.com") for n in range(3)]
    batch = {"requests": [*inner, {"method": "GET", "path": "api/groups"}]}
    async with in_process(sandbox) as client:
        first = await client.post("/api/batch", json=batch)  # one request, however many inside
        answers = [await client.get("/api/groups") for _ in range(119)]
        refused = await client.get("/api/groups")
        sandbox.clock.advance(60)
        again = await client.get("/api/groups")
    assert first.headers["x-ratelimit-limit"] == "120"
    assert first.headers["x-ratelimit-remaining"] == "119"
    assert answers[-1].status_code == 200
    assert answers[-1].headers["x-ratelimit-remaining"] == "0"
    assert (refused.status_code, refused.json()) == (429, {"message": "Too Many Attempts."})
    assert refused.headers["x-ratelimit-remaining"] == "0"
    assert 0 < float(refused.headers["retry-after"]) <= 10.0
    assert (again.status_code, again.headers["x-ratelimit-remaining"]) == (200, "119")


async def test_no_account_limit_when_per_minute_is_none() -> None:
    sandbox = account()
    async with in_process(sandbox) as client:
        answers = [await client.get("/api/fields") for _ in range(130)]
    assert {r.status_code for r in answers} == {200}
    assert "x-ratelimit-limit" not in answers[0].headers


async def test_wrong_methods_and_unknown_routes_answer_like_laravel() -> None:
    sandbox = account()
    async with in_process(sandbox) as client:
        unknown = await client.get("/api/campaigns")
        wrong = await client.delete("/api/fields")
    assert (unknown.status_code, unknown.json()) == (
        404,
        {"message": "The route api/campaigns could not be found."},
    )
    assert wrong.status_code == 405


async def test_group_counts_follow_subscribers_as_they_change() -> None:
    sandbox = account()
    group = sandbox.add_group("Counted")
    async with in_process(sandbox) as client:
        for email in ("a@example.com", "b@example.com", "c@example.com"):
            await client.post("/api/subscribers", json={"email": email, "groups": [group]})
        await client.post("/api/subscribers", json={"email": "a@example.com", "groups": [group]})
        sandbox.unsubscribe("b@example.com")
        groups = (await client.get("/api/groups", params={"limit": 100})).json()["data"]
    counted = next(g for g in groups if g["id"] == group)
    assert (counted["active_count"], counted["unsubscribed_count"]) == (2, 1)
