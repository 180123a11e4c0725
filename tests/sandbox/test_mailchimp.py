"""The Mailchimp sandbox answers like the Marketing API 3.0 (shared/api/push-providers §3)."""

from __future__ import annotations

import asyncio
import base64
import gzip
import io
import json
import tarfile
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import yaml

from sandbox.mailchimp import MailchimpSandbox, create_app, subscriber_hash
from sandbox.registry import create_app as registry_app
from tests.sandbox.conftest import Connect, connected
from tests.support import openapi

KEY = "f0e1d2c3b4a5968778695a4b3c2d1e0f-us19"
CLIENT_ID, CLIENT_SECRET = "client-1", "secret-1"
REDIRECT = "https://app.example.com/callback"
SPEC = Path(__file__).resolve().parents[3] / "shared/specs/mailchimp-marketing-3.0.76-openapi3.yaml"
COPIED_SPEC = Path(__file__).with_name("mailchimp_openapi_definitions.json")
COMPLIANCE = "Member In Compliance State"
FORGOTTEN = "Forgotten Email Not Subscribed"
Defs = dict[str, Any]


def account(**options: Any) -> MailchimpSandbox:
    """A sandbox whose default account has the key KEY and one audience."""
    options.setdefault("client_id", CLIENT_ID)
    options.setdefault("client_secret", CLIENT_SECRET)
    sandbox: MailchimpSandbox = create_app(KEY, **options).state.sandbox
    return sandbox


def basic(key: str) -> dict[str, str]:
    """HTTP Basic with any user name and the key as password (push §3.1)."""
    return {"Authorization": "Basic " + base64.b64encode(f"anystring:{key}".encode()).decode()}


def in_process(sandbox: MailchimpSandbox, key: str = KEY) -> Any:
    return connected("in-process", sandbox.app, headers=basic(key))


def list_id(sandbox: MailchimpSandbox) -> str:
    """The default audience's id."""
    (only,) = sandbox.account(KEY).audiences
    return only


def member_path(audience: str, email: str, tail: str = "") -> str:
    return f"/3.0/lists/{audience}/members/{subscriber_hash(email)}{tail}"


def put(email: str, **body: Any) -> dict[str, Any]:
    return {"email_address": email, **body}


def is_problem(response: httpx.Response, status: int, title: str | None = None) -> bool:
    body = response.json()
    return (
        response.status_code == status
        and response.headers["content-type"].startswith("application/problem+json")
        and body["status"] == status
        and (title is None or body["title"] == title)
    )


# ---- the copied OpenAPI schemas ------------------------------------------------------------------

EXTRA = {("Problem Detail Document", "errors")}  # push §3.12: validation errors add `errors`


def without_examples(schema: Any, in_properties: bool = False) -> Any:
    """A schema without its `example`s (they are most of the text and validate nothing)."""
    if isinstance(schema, list):
        return [without_examples(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    return {
        key: without_examples(value, key == "properties" and not in_properties)
        for key, value in schema.items()
        if in_properties or key != "example"
    }


@pytest.fixture(scope="module")
def definitions() -> Defs:
    """The answer schemas of the official OpenAPI (examples left out), from the copy beside
    this file (the shared specs folder is not part of a clone); where the original is at hand,
    the copy must match it."""
    copied: Defs = json.loads(COPIED_SPEC.read_text())["definitions"]
    if SPEC.exists():
        loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        with SPEC.open() as file:
            original = yaml.load(file, Loader=loader)["components"]["schemas"]
        assert {name: without_examples(original[name]) for name in copied} == copied
    return copied


violations = partial(openapi.violations, extra=EXTRA)
check = partial(openapi.check, extra=EXTRA)


def test_the_validator_catches_what_the_spec_forbids(definitions: Defs) -> None:
    member = {"id": 7, "status": "gone", "tags": [{"id": 1, "name": "a", "extra": 1}]}
    assert violations(member, {"$ref": "#/x/List Members_2"}, definitions) == [
        "$.id: 7 is not string",
        "$.status: 'gone' is not one of "
        "['subscribed', 'unsubscribed', 'cleaned', 'pending', 'transactional', 'archived']",
        "$.tags[0].extra: not in List Members_1_tags",
    ]
    problem = {"title": "x", "status": 400, "errors": []}
    assert violations(problem, {"$ref": "#/x/Problem Detail Document"}, definitions) == [
        "$.detail: required, missing",
        "$.instance: required, missing",
        "$.type: required, missing",
    ]


# ---- OAuth (push §3.1) ---------------------------------------------------------------------------


async def test_oauth_code_becomes_a_token_that_never_expires_and_finds_the_dc() -> None:
    sandbox = account(redirect_uris=(REDIRECT,))
    async with connected("in-process", sandbox.app) as client:
        query = {"response_type": "code", "client_id": CLIENT_ID, "redirect_uri": REDIRECT}
        approved = await client.get("/oauth2/authorize", params={**query, "state": "s1"})
        location = urlsplit(approved.headers["location"])
        sent = parse_qs(location.query)
        form = {
            "grant_type": "authorization_code",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "redirect_uri": REDIRECT,
            "code": sent["code"][0],
        }
        token = await client.post("/oauth2/token", data=form)
        access = token.json()["access_token"]
        meta = await client.get("/oauth2/metadata", headers={"Authorization": f"OAuth {access}"})
        endpoint = meta.json()["api_endpoint"]
        lists = await client.get(
            f"{endpoint}/3.0/lists", headers={"Authorization": f"Bearer {access}"}
        )
    assert approved.status_code == 302
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
    assert sent["state"] == ["s1"]
    assert token.status_code == 200
    assert (token.json()["expires_in"], token.json()["scope"]) == (0, None)
    assert (meta.json()["dc"], meta.json()["role"], endpoint) == ("us19", "owner", "http://sandbox")
    assert meta.json()["login"]["login_id"] == meta.json()["user_id"]
    assert (lists.status_code, lists.json()["total_items"]) == (200, 1)


async def test_oauth_refuses_bad_clients_secrets_and_spent_codes() -> None:
    sandbox = account(redirect_uris=(REDIRECT,))
    query = {"response_type": "code", "client_id": CLIENT_ID, "redirect_uri": REDIRECT}
    async with connected("in-process", sandbox.app) as client:
        stranger = await client.get("/oauth2/authorize", params={**query, "client_id": "x"})
        elsewhere = await client.get(
            "/oauth2/authorize", params={**query, "redirect_uri": "https://evil.example/cb"}
        )
        approved = await client.get("/oauth2/authorize", params=query)
        code = parse_qs(urlsplit(approved.headers["location"]).query)["code"][0]
        form = {
            "grant_type": "authorization_code",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "redirect_uri": REDIRECT,
            "code": code,
        }
        wrong_secret = await client.post("/oauth2/token", data={**form, "client_secret": "no"})
        unknown = await client.post("/oauth2/token", data={**form, "code": "nope"})
        first = await client.post("/oauth2/token", data=form)
        reused = await client.post("/oauth2/token", data=form)
        bad_token = await client.get("/oauth2/metadata", headers={"Authorization": "OAuth x"})
    assert (stranger.status_code, elsewhere.status_code) == (400, 400)
    assert first.status_code == 200
    for refused in (wrong_secret, unknown, reused):
        assert (refused.status_code, refused.json()) == (400, {"error": "invalid_grant"})
    assert (bad_token.status_code, bad_token.json()) == (200, {"error": "invalid_token"})


# ---- auth, routes, the registry ------------------------------------------------------------------


async def test_basic_and_bearer_pass_and_anything_else_is_a_401_problem(
    definitions: Defs,
) -> None:
    sandbox = account()
    token = sandbox.mint_token(KEY)
    async with connected("in-process", sandbox.app) as client:
        by_key = await client.get("/3.0/lists", headers=basic(KEY))
        by_token = await client.get("/3.0/lists", headers={"Authorization": f"Bearer {token}"})
        missing = await client.get("/3.0/lists")
        wrong = await client.get("/3.0/lists", headers=basic("nope-us19"))
        other = sandbox.add_account("Other")
        theirs = await client.get(f"/3.0/lists/{list_id(sandbox)}", headers=basic(other.api_key))
    assert (by_key.status_code, by_token.status_code) == (200, 200)
    assert is_problem(missing, 401, "API Key Missing")
    assert is_problem(wrong, 401, "API Key Invalid")
    assert is_problem(theirs, 404, "Resource Not Found")  # another account's audience
    for problem in (missing, wrong, theirs):
        check(problem.json(), "Problem Detail Document", definitions)


async def test_unknown_routes_are_404_and_wrong_methods_405_problems() -> None:
    sandbox = account()
    async with in_process(sandbox) as client:
        unknown = await client.get("/3.0/campaigns")
        wrong = await client.delete("/3.0/lists")
        ping = await client.get("/3.0/ping")
    assert is_problem(unknown, 404)
    assert is_problem(wrong, 405)
    assert ping.json() == {"health_status": "Everything's Chimpy!"}


async def test_merge_fields_are_listed_and_added_once() -> None:
    sandbox = account()
    audience = list_id(sandbox)
    async with in_process(sandbox) as client:
        listed = await client.get(f"/3.0/lists/{audience}/merge-fields", headers=basic(KEY))
        body = {"name": "Company", "type": "text", "tag": "company"}
        added = await client.post(
            f"/3.0/lists/{audience}/merge-fields", json=body, headers=basic(KEY)
        )
        again = await client.post(
            f"/3.0/lists/{audience}/merge-fields", json=body, headers=basic(KEY)
        )
        wrong = await client.post(
            f"/3.0/lists/{audience}/merge-fields",
            json={"name": "X", "type": "colour"},
            headers=basic(KEY),
        )
        member = await client.put(
            f"/3.0/lists/{audience}/members/{subscriber_hash('a@b.example')}",
            json={
                "email_address": "a@b.example",
                "status_if_new": "subscribed",
                "merge_fields": {"COMPANY": "Acme"},
            },
            headers=basic(KEY),
        )
    assert [f["tag"] for f in listed.json()["merge_fields"]] == ["FNAME", "LNAME", "PHONE"]
    assert listed.json()["merge_fields"][2]["type"] == "phone"
    assert (added.status_code, added.json()["tag"]) == (200, "COMPANY")
    assert is_problem(again, 400, "Invalid Resource")
    assert is_problem(wrong, 400, "Invalid Resource")
    assert member.json()["merge_fields"]["COMPANY"] == "Acme"


async def test_the_api_root_names_the_account_of_the_credentials() -> None:
    sandbox = account()
    other = sandbox.add_account("Other", "us6")
    async with in_process(sandbox) as client:
        mine = await client.get("/3.0/", headers=basic(KEY))
        theirs = await client.get("/3.0/", headers=basic(other.api_key))
    assert mine.json()["account_id"] == sandbox.account(KEY).account_id
    assert theirs.json()["account_id"] == other.account_id != mine.json()["account_id"]
    assert theirs.json()["account_name"] == "Other"


def test_the_registry_builds_it_with_cli_options() -> None:
    sandbox = registry_app("mailchimp", api_key="abc-us6", scale=60).state.sandbox
    assert isinstance(sandbox, MailchimpSandbox)
    assert (sandbox.account("abc-us6").dc, sandbox.clock.scale) == ("us6", 60)
    assert sandbox.max_connections == 10


# ---- audiences (push §3.9) -----------------------------------------------------------------------


async def test_lists_page_by_count_and_offset(definitions: Defs) -> None:
    sandbox = account()
    owner = sandbox.add_account("Three lists", dc="us6")
    ids = [sandbox.add_audience(owner, f"Audience {n}") for n in range(3)]
    async with in_process(sandbox, owner.api_key) as client:
        first = await client.get("/3.0/lists", params={"count": 2})
        rest = await client.get("/3.0/lists", params={"count": 2, "offset": 2})
        one = await client.get(f"/3.0/lists/{ids[1]}")
        too_many = await client.get("/3.0/lists", params={"count": 1001})
    assert [a["id"] for a in first.json()["lists"]] == ids[:2]
    assert [a["id"] for a in rest.json()["lists"]] == ids[2:]
    assert (first.json()["total_items"], one.json()["name"]) == (3, "Audience 1")
    assert is_problem(too_many, 400, "Invalid Resource")
    check(first.json(), "Subscriber Lists", definitions)
    check(one.json(), "Subscriber List_1", definitions)


async def test_members_page_by_count_offset_and_status(definitions: Defs) -> None:
    sandbox = account()
    audience = list_id(sandbox)
    emails = [f"m{n:02}@example.com" for n in range(25)]
    async with in_process(sandbox) as client:
        for email in emails:
            await client.put(member_path(audience, email), json=put(email, status_if_new="pending"))
        sandbox.set_status(audience, emails[3], "unsubscribed")
        pages = [
            await client.get(f"/3.0/lists/{audience}/members", params={"count": 10, "offset": o})
            for o in (0, 10, 20)
        ]
        gone = await client.get(f"/3.0/lists/{audience}/members", params={"status": "unsubscribed"})
        counts = await client.get(f"/3.0/lists/{audience}")
    seen = [m["email_address"] for page in pages for m in page.json()["members"]]
    assert seen == emails
    assert [p.json()["total_items"] for p in pages] == [25, 25, 25]
    assert [m["email_address"] for m in gone.json()["members"]] == [emails[3]]
    stats = counts.json()["stats"]
    assert (stats["unsubscribe_count"], stats["total_contacts"]) == (1, 25)
    check(pages[0].json(), "List Members_1", definitions)


# ---- members (push §3.2 to §3.6) -----------------------------------------------------------------


async def test_put_creates_then_updates_the_member_its_hash_names(definitions: Defs) -> None:
    sandbox = account()
    audience = list_id(sandbox)
    path = member_path(audience, "ann@example.com")
    async with in_process(sandbox) as client:
        created = await client.put(
            path,
            json=put(
                "Ann@Example.com",
                status_if_new="subscribed",
                merge_fields={"FNAME": "Ann", "LNAME": "Lee"},
            ),
        )
        updated = await client.put(
            path, json=put("ann@example.com", status_if_new="pending", merge_fields={"LNAME": "Li"})
        )
        mismatch = await client.put(path, json=put("bob@example.com", status_if_new="subscribed"))
        unknown_field = await client.put(
            path, json=put("ann@example.com", merge_fields={"SHOE": "42"})
        )
        missing = await client.get(member_path(audience, "nobody@example.com"))
        fetched = await client.get(path)
    body = created.json()
    assert created.status_code == 200
    assert (body["id"], body["status"], body["full_name"]) == (
        subscriber_hash("ann@example.com"),
        "subscribed",
        "Ann Lee",
    )
    assert updated.json()["status"] == "subscribed"  # status_if_new: only when new
    assert updated.json()["merge_fields"] == {"FNAME": "Ann", "LNAME": "Li", "PHONE": ""}
    assert fetched.json() == updated.json()
    assert is_problem(mismatch, 400)
    assert is_problem(unknown_field, 400, "Invalid Resource")
    assert unknown_field.json()["errors"][0]["field"] == "SHOE"
    assert is_problem(missing, 404, "Resource Not Found")
    check(body, "List Members_2", definitions)
    check(unknown_field.json(), "Problem Detail Document", definitions)
    assert len(sandbox.account(KEY).audiences[audience].members) == 1


@pytest.mark.parametrize("state", ["unsubscribed", "cleaned"])
async def test_an_unsubscribed_or_cleaned_member_is_never_resubscribed(
    state: str, definitions: Defs
) -> None:
    sandbox = account()
    audience = list_id(sandbox)
    email = "gone@example.com"
    path = member_path(audience, email)
    async with in_process(sandbox) as client:
        await client.put(path, json=put(email, status_if_new="subscribed"))
        sandbox.set_status(audience, email, state)
        quiet = await client.put(path, json=put(email, status_if_new="subscribed"))
        forced = await client.put(path, json=put(email, status="subscribed"))
        archived = await client.delete(path)
        back = await client.put(path, json=put(email, status_if_new="subscribed"))
        pending = await client.put(path, json=put(email, status_if_new="pending"))
    assert (quiet.status_code, quiet.json()["status"]) == (200, state)
    assert is_problem(forced, 400, COMPLIANCE)
    assert forced.json()["detail"] == (
        f"{email} is in a compliance state due to unsubscribe, bounce, or compliance review "
        "and cannot be subscribed."
    )
    assert archived.status_code == 204
    assert is_problem(back, 400, COMPLIANCE)  # archiving does not launder the status
    assert pending.json()["status"] == "pending"  # push §3.6: the documented way back
    check(forced.json(), "Problem Detail Document", definitions)


async def test_delete_archives_and_put_brings_the_member_back() -> None:
    sandbox = account()
    audience = list_id(sandbox)
    email = "arch@example.com"
    async with in_process(sandbox) as client:
        await client.put(member_path(audience, email), json=put(email, status_if_new="subscribed"))
        deleted = await client.delete(member_path(audience, email))
        archived = sandbox.member(audience, email)
        back = await client.put(
            member_path(audience, email), json=put(email, status_if_new="subscribed")
        )
    assert deleted.status_code == 204
    assert archived is not None
    assert archived["status"] == "archived"
    assert back.json()["status"] == "subscribed"


async def test_a_permanently_deleted_email_cannot_come_back() -> None:
    sandbox = account()
    audience = list_id(sandbox)
    email = "gdpr@example.com"
    path = member_path(audience, email)
    async with in_process(sandbox) as client:
        await client.put(path, json=put(email, status_if_new="subscribed"))
        deleted = await client.post(member_path(audience, email, "/actions/delete-permanent"))
        fetched = await client.get(path)
        again = await client.put(path, json=put(email, status_if_new="subscribed"))
        batch = await client.post(
            f"/3.0/lists/{audience}", json={"members": [put(email, status="subscribed")]}
        )
    assert deleted.status_code == 204
    assert is_problem(fetched, 404)
    assert is_problem(again, 400, FORGOTTEN)
    assert again.json()["detail"] == (
        f"{email} was permanently deleted and cannot be re-imported. "
        "The contact must re-subscribe to get back on the list."
    )
    assert batch.json()["error_count"] == 1
    assert sandbox.member(audience, email) is None


# ---- tags (push §3.4) ----------------------------------------------------------------------------


async def test_tags_are_additive_and_inactive_removes_only_the_named(definitions: Defs) -> None:
    sandbox = account()
    audience = list_id(sandbox)
    email = "tags@example.com"
    tags_path = member_path(audience, email, "/tags")

    def body(**tags: str) -> dict[str, Any]:
        return {"tags": [{"name": n, "status": s} for n, s in tags.items()]}

    async with in_process(sandbox) as client:
        await client.put(member_path(audience, email), json=put(email, status_if_new="subscribed"))
        added = await client.post(tags_path, json=body(app_a="active", app_b="active"))
        sandbox.tag(audience, email, "crm-only")  # set in Mailchimp's own UI
        changed = await client.post(tags_path, json=body(app_a="inactive", app_c="active"))
        ignored = await client.put(member_path(audience, email), json=put(email, tags=["from-put"]))
        listed = await client.get(tags_path)
        bad = await client.post(tags_path, json=body(app_d="maybe"))
        nobody = await client.post(member_path(audience, "x@example.com", "/tags"), json=body())
    assert (added.status_code, changed.status_code) == (204, 204)
    assert set(sandbox.tags(audience, email)) == {"app_b", "crm-only", "app_c"}
    assert ignored.json()["tags_count"] == 3  # PUT leaves an existing member's tags alone
    assert [t["name"] for t in listed.json()["tags"]] == ["app_b", "crm-only", "app_c"]
    assert is_problem(bad, 400, "Invalid Resource")
    assert is_problem(nobody, 404)
    check(listed.json(), "Collection of Tags", definitions)
    check(ignored.json(), "List Members_2", definitions)


# ---- batch subscribe (push §3.7) -----------------------------------------------------------------


async def test_batch_subscribe_counts_creates_updates_and_errors(definitions: Defs) -> None:
    sandbox = account()
    audience = list_id(sandbox)
    url = f"/3.0/lists/{audience}"
    async with in_process(sandbox) as client:
        first = await client.post(
            url,
            json={
                "members": [
                    put("a@example.com", status="subscribed", merge_fields={"FNAME": "A"}),
                    put("b@example.com", status="subscribed"),
                    put("not-an-email", status="subscribed"),
                ]
            },
        )
        sandbox.set_status(audience, "b@example.com", "unsubscribed")
        second = await client.post(
            url,
            json={
                "members": [
                    put("a@example.com", status="subscribed", merge_fields={"LNAME": "Z"}),
                    put("b@example.com", status="subscribed"),
                ],
                "update_existing": True,
            },
        )
        without_update = await client.post(
            url, json={"members": [put("a@example.com", status="subscribed")]}
        )
        too_many = await client.post(
            url,
            json={"members": [put(f"n{n}@example.com", status="subscribed") for n in range(501)]},
        )
    one = first.json()
    assert (one["total_created"], one["total_updated"], one["error_count"]) == (2, 0, 1)
    assert [m["email_address"] for m in one["new_members"]] == ["a@example.com", "b@example.com"]
    assert (one["errors"][0]["email_address"], one["errors"][0]["error_code"]) == (
        "not-an-email",
        "ERROR_GENERIC",
    )
    two = second.json()
    assert (two["total_created"], two["total_updated"], two["error_count"]) == (0, 1, 1)
    assert two["updated_members"][0]["merge_fields"]["FNAME"] == "A"  # merged, not replaced
    assert "is in a compliance state" in two["errors"][0]["error"]
    assert without_update.json()["errors"][0]["error_code"] == "ERROR_CONTACT_EXISTS"
    assert is_problem(too_many, 400, "Invalid Resource")
    assert len(sandbox.account(KEY).audiences[audience].members) == 2
    check(one, "Batch update List members", definitions)
    check(two, "Batch update List members", definitions)


# ---- batch operations (push §3.8) ----------------------------------------------------------------


async def test_a_batch_runs_its_operations_and_serves_the_results(definitions: Defs) -> None:
    sandbox = account()
    audience = list_id(sandbox)
    email = "op@example.com"
    operations = [
        {
            "method": "PUT",
            "path": member_path(audience, email).removeprefix("/3.0"),
            "body": json.dumps(put(email, status_if_new="subscribed")),
            "operation_id": "put-1",
        },
        {"method": "GET", "path": member_path(audience, "none@example.com").removeprefix("/3.0")},
    ]
    async with in_process(sandbox) as client:
        submitted = await client.post("/3.0/batches", json={"operations": operations})
        polled = await client.get(f"/3.0/batches/{submitted.json()['id']}")
        archive = await client.get(polled.json()["response_body_url"])
    assert submitted.json()["status"] == "pending"
    done = polled.json()
    assert (done["status"], done["total_operations"], done["errored_operations"]) == (
        "finished",
        2,
        1,
    )
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(archive.content))) as tar:
        (entry,) = tar.getmembers()
        extracted = tar.extractfile(entry)
        assert extracted is not None
        results = json.loads(extracted.read())
    assert [(r["status_code"], r["operation_id"]) for r in results] == [(200, "put-1"), (404, None)]
    assert json.loads(results[0]["response"])["email_address"] == email
    member = sandbox.member(audience, email)
    assert member is not None
    assert member["status"] == "subscribed"
    check(submitted.json(), "Batch", definitions)
    check(done, "Batch", definitions)


# ---- the connection cap (push §3.11) -------------------------------------------------------------


@pytest.mark.serial
async def test_the_eleventh_simultaneous_request_of_an_account_gets_a_429(
    connect: Connect, definitions: Defs
) -> None:
    sandbox = account(latency=0.2)
    other = sandbox.add_account("Other")
    async with (
        connect(sandbox.app, headers=basic(KEY)) as client,
        connect(sandbox.app, headers=basic(other.api_key)) as other_client,
    ):
        answers = await asyncio.gather(
            *(client.get("/3.0/lists") for _ in range(11)),
            *(other_client.get("/3.0/lists") for _ in range(10)),
        )
        after = await client.get("/3.0/lists")
    mine, theirs = answers[:11], answers[11:]
    assert sorted(a.status_code for a in mine) == [200] * 10 + [429]
    assert [a.status_code for a in theirs] == [200] * 10  # the cap is per account
    (limited,) = [a for a in mine if a.status_code == 429]
    assert is_problem(limited, 429, "Too Many Requests")
    check(limited.json(), "Problem Detail Document", definitions)
    assert (sandbox.peak_concurrency(KEY), sandbox.peak_concurrency(other)) == (10, 10)
    assert after.status_code == 200
    assert sandbox.account(KEY).in_flight == 0
