"""The ActiveCampaign v3 sandbox answers like the documented API (shared/api/pull-providers §1)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from starlette.requests import Request

from sandbox.activecampaign import ActiveCampaignSandbox, create_app
from sandbox.activecampaign_data import SEED_SHAPE, generate
from sandbox.registry import create_app as registry_app
from tests.sandbox.conftest import Connect, connected

KEY = "ac-test-key"
AUTH = {"Api-Token": KEY}
API = "/api/3"
AFTER_GENERATED = datetime(2026, 6, 1, 17, 0, 0, tzinfo=UTC)  # later than every seeded record
OFFSET = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d-0[56]:00$")


def small(contacts: int = 450, deals: int = 300, **options: Any) -> ActiveCampaignSandbox:
    """A sandbox without a rate limit, so tests page as fast as they like."""
    sandbox: ActiveCampaignSandbox = create_app(
        KEY, contacts=contacts, deals=deals, per_second=None, **options
    ).state.sandbox
    return sandbox


def in_process(sandbox: ActiveCampaignSandbox) -> Any:
    return connected("in-process", sandbox.app, headers=AUTH)


async def get(client: httpx.AsyncClient, path: str, **params: Any) -> Any:
    response = await client.get(API + path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def walk(client: httpx.AsyncClient, path: str, key: str, **params: Any) -> list[Any]:
    """Every record of an offset walk (stopping on a short page, as AC clients must)."""
    records: list[Any] = []
    while True:
        page = (await get(client, path, limit=100, offset=len(records), **params))[key]
        records += page
        if len(page) < 100:
            return records


async def keyset(client: httpx.AsyncClient, **params: Any) -> list[int]:
    """Contact ids of an `orders[id]=ASC` + `id_greater` walk."""
    ids: list[int] = []
    while True:
        query = {"orders[id]": "ASC", "id_greater": ids[-1] if ids else 0, "limit": 100}
        page = [
            int(c["id"]) for c in (await get(client, "/contacts", **query, **params))["contacts"]
        ]
        ids += page
        if len(page) < 100:
            return ids


async def test_missing_or_wrong_token_is_403_forbidden(connect: Connect) -> None:
    sandbox = small()
    async with connect(sandbox.app) as client:
        missing = await client.get(f"{API}/contacts")
        wrong = await client.get(f"{API}/deals", headers={"Api-Token": "nope"})
        right = await client.get(f"{API}/users/me", headers=AUTH)
    assert [r.status_code for r in (missing, wrong)] == [403, 403]
    assert missing.json() == wrong.json() == {"message": "Forbidden"}
    assert right.json()["user"]["id"] == "1"


async def test_offset_and_keyset_walks_cover_every_contact_exactly_once(connect: Connect) -> None:
    sandbox = small(contacts=450)
    async with connect(sandbox.app, headers=AUTH) as client:
        by_offset = await walk(client, "/contacts", "contacts", **{"orders[id]": "ASC"})
        by_keyset = await keyset(client)
        first = await get(client, "/contacts", **{"orders[id]": "ASC", "id_greater": 400})
        default = await walk(client, "/contacts", "contacts")
    assert [int(c["id"]) for c in by_offset] == by_keyset == list(range(1, 451))
    # id_greater is a filter: the total counts what is left, the page starts after it.
    assert (first["meta"]["total"], first["contacts"][0]["id"]) == ("50", "401")
    # Without orders[...] the order is the documented example's (by email), not by id.
    emails = [c["email"] for c in default]
    assert emails == sorted(emails)
    assert len(set(emails)) == 450
    assert [c["id"] for c in default] != [c["id"] for c in by_offset]


async def test_limit_defaults_to_20_and_is_clamped_to_100() -> None:
    sandbox = small(contacts=250)
    async with in_process(sandbox) as client:
        default = await get(client, "/contacts")
        big = await get(client, "/contacts", limit=500)
        odd = await get(client, "/contacts", limit="x", offset=-3)
        past = await get(client, "/contacts", offset=1000)
    assert len(default["contacts"]) == 20
    assert (len(big["contacts"]), big["meta"]["page_input"]["limit"]) == (100, 100)
    assert (len(odd["contacts"]), odd["meta"]["page_input"]["offset"]) == (20, 0)
    assert (past["contacts"], past["meta"]["total"]) == ([], "250")


async def test_meta_total_is_a_string_except_an_int_on_deals_and_absent_on_deal_fields() -> None:
    sandbox = small(contacts=30, deals=40)
    async with in_process(sandbox) as client:
        metas = {
            path: (await get(client, path)).get("meta")
            for path in (
                "/contacts",
                "/deals",
                "/fields",
                "/fieldValues",
                "/dealGroups",
                "/dealStages",
                "/users",
                "/dealCustomFieldMeta",
                "/dealCustomFieldData",
            )
        }
    assert metas["/deals"]["total"] == 40
    assert metas["/dealCustomFieldMeta"] is None
    assert metas["/dealCustomFieldData"] is None
    for path in ("/contacts", "/fields", "/fieldValues", "/dealGroups", "/dealStages", "/users"):
        assert isinstance(metas[path]["total"], str), path
    assert (metas["/contacts"]["total"], metas["/dealStages"]["total"]) == ("30", "15")


async def test_updated_after_returns_exactly_the_records_changed_since_inclusive() -> None:
    sandbox = small()
    sandbox.clock.set(AFTER_GENERATED)
    sandbox.update_contact(3, firstName="Ann")  # the same second as the next one: ≥ keeps both
    sandbox.update_contact(7, fields={"Industry": "Finance"})
    sandbox.update_contact(9, lastName="Later", at=AFTER_GENERATED + timedelta(seconds=5))
    sandbox.update_deal(4, title="Renamed")
    sandbox.update_deal(8, value=123_400, at=AFTER_GENERATED + timedelta(seconds=5))

    async def updated(path: str, key: str, after: str) -> set[int]:
        params = {"filters[updated_after]": after, "orders[id]": "ASC"}
        return {int(r["id"]) for r in await walk(client, path, key, **params)}

    async with in_process(sandbox) as client:
        same_second = await updated("/contacts", "contacts", "2026-06-01T17:00:00Z")
        with_offset = await updated("/contacts", "contacts", "2026-06-01T12:00:00-05:00")
        fraction = await updated("/contacts", "contacts", "2026-06-01T17:00:00.999000+00:00")
        naive = await updated("/contacts", "contacts", "2026-06-01T12:00:00")  # account time
        next_second = await updated("/contacts", "contacts", "2026-06-01T17:00:01Z")
        by_date = await updated("/contacts", "contacts", "2026-06-01")  # account midnight
        deals = await updated("/deals", "deals", "2026-06-01T17:00:00Z")
        later_deals = await updated("/deals", "deals", "2026-06-01T17:00:03Z")
        unreadable = await get(client, "/contacts", **{"filters[updated_after]": "soon"})
        row = await get(client, "/contacts", **{"filters[updated_after]": "2026-06-01"})
    assert same_second == with_offset == fraction == naive == by_date == {3, 7, 9}
    assert next_second == {9}
    assert (deals, later_deals) == ({4, 8}, {8})
    assert unreadable["meta"]["total"] == "450"  # ignored like an unknown filter
    assert row["contacts"][0]["udate"] == "2026-06-01T12:00:00-05:00"


async def test_changes_during_a_keyset_walk_show_up_in_the_pages_still_to_come(
    connect: Connect,
) -> None:
    sandbox = small(contacts=350)
    pages: list[str] = []

    def meanwhile(request: Request) -> None:
        if request.url.path.endswith("/contacts"):
            pages.append(request.query_params.get("id_greater", ""))
            if len(pages) == 2:  # after the first page: one change behind, two ahead
                sandbox.update_contact(5, email="moved@example.com", at=AFTER_GENERATED)
                sandbox.delete_contact(300)
                sandbox.create_contact("new@example.com", firstName="New", at=AFTER_GENERATED)

    sandbox.on_request(meanwhile)
    async with connect(sandbox.app, headers=AUTH) as client:
        seen = await keyset(client)
        changed = await get(client, "/contacts", **{"filters[updated_after]": "2026-06-01T17:00Z"})
    assert seen == [*range(1, 300), *range(301, 352)]
    assert {c["id"]: c["email"] for c in changed["contacts"]} == {
        "5": "moved@example.com",
        "351": "new@example.com",
    }


async def test_deals_carry_cents_currency_and_pipeline_stage_owner_ids() -> None:
    sandbox = small(contacts=100, deals=600)
    async with in_process(sandbox) as client:
        deals = await walk(client, "/deals", "deals")
        groups = await get(client, "/dealGroups", limit=100)
        users = await get(client, "/users", limit=100)
        first = await get(client, "/deals", limit=5)
        by_cdate = await walk(client, "/deals", "deals", **{"orders[cdate]": "DESC"})
    stage_group = {s["id"]: s["group"] for s in groups["dealStages"]}
    user_ids = {u["id"] for u in users["users"]}
    full = [d for d in deals if not d["isDisabled"]]
    stubs = [d for d in deals if d["isDisabled"]]
    assert [int(d["id"]) for d in deals] == list(range(1, 601))  # default: by id
    assert 0 < len(stubs) < 40  # deals in the pipeline the key's user cannot see
    assert all(set(d) == {"title", "status", "id", "isDisabled"} for d in stubs)
    for deal in full:
        assert deal["value"].isdigit()
        assert deal["currency"] in ("usd", "eur", "gbp")
        assert stage_group[deal["stage"]] == deal["group"]
        assert deal["owner"] in user_ids
        assert deal["status"] in ("0", "1", "2")
        assert OFFSET.match(deal["mdate"])
    expected = sandbox.deals_by_id()
    assert all(int(d["value"]) == expected[int(d["id"])]["value_cents"] for d in full)
    usd = first["meta"]["currencies"]["USD"]
    usd_deals = [d for d in full if d["currency"] == "usd"]
    assert (usd["total"], usd["value"]) == (
        str(len(usd_deals)),
        str(sum(int(d["value"]) for d in usd_deals)),
    )
    cdates = [datetime.fromisoformat(d["cdate"]) for d in by_cdate if "cdate" in d]
    assert cdates == sorted(cdates, reverse=True)


async def test_field_values_link_contacts_to_the_field_definitions() -> None:
    sandbox = small(contacts=200)
    async with in_process(sandbox) as client:
        fields = await get(client, "/fields")
        values = await walk(client, "/fieldValues", "fieldValues")
        industry = await walk(client, "/fieldValues", "fieldValues", **{"filters[fieldid]": 2})
        one = await get(client, "/contacts/5/fieldValues")
    by_id = {f["id"]: f for f in fields["fields"]}
    options = {(o["field"], o["value"]) for o in fields["fieldOptions"]}
    assert len(by_id) == 8
    assert len(fields["fieldRels"]) == 8
    assert 2.5 < len(values) / 200 < 3.5
    assert [v["id"] for v in values] == sorted((v["id"] for v in values), key=int)
    for value in values:
        field = by_id[value["field"]]
        assert value["owner"] == value["contact"]
        assert 1 <= int(value["contact"]) <= 200
        if field["type"] in ("checkbox", "listbox"):  # multi-values as ||a||b||
            assert re.fullmatch(r"\|\|(.+?\|\|)+", value["value"])
            picked = value["value"].strip("|").split("||")
            assert all((field["id"], p) in options for p in picked)
        elif field["type"] in ("dropdown", "radio"):
            assert (field["id"], value["value"]) in options
    assert {v["field"] for v in industry} == {"2"}
    stored = sandbox.contacts_by_id()
    for contact_id in range(1, 201):
        mine = {
            by_id[v["field"]]["title"]: v["value"]
            for v in values
            if v["contact"] == str(contact_id)
        }
        assert stored[contact_id]["fields"] == mine
    assert {v["contact"] for v in one["fieldValues"]} <= {"5"}
    assert all(v["created_by"] == "0" for v in one["fieldValues"])


async def test_deal_groups_sideload_their_stages() -> None:
    sandbox = small()
    async with in_process(sandbox) as client:
        groups = await get(client, "/dealGroups", limit=2)
        stages = await get(client, "/dealStages", **{"filters[d_groupid]": 2})
    assert groups["meta"]["total"] == "3"
    assert len(groups["dealGroups"]) == 2
    sideloaded = [s["id"] for s in groups["dealStages"]]
    assert sideloaded == [s for g in groups["dealGroups"] for s in g["stages"]]
    assert {s["group"] for s in groups["dealStages"]} == {"1", "2"}
    # As in the documented example, some stages have no dates at all.
    assert [(s["cdate"], s["udate"]) for s in stages["dealStages"]] == [(None, None)] * 5


async def test_deal_custom_field_meta_and_data() -> None:
    sandbox = small(contacts=50, deals=200)
    async with in_process(sandbox) as client:
        meta = (await get(client, "/dealCustomFieldMeta"))["dealCustomFieldMeta"]
        data = await walk(client, "/dealCustomFieldData", "dealCustomFieldData")
        deal_one = await get(client, "/dealCustomFieldData", **{"filters[dealId]": 1})
        lowercase = await get(client, "/dealCustomFieldData", **{"filters[dealid]": 1})
        per_deal = await get(client, "/deals/1/dealCustomFieldData")
    types = {int(m["id"]): m["fieldType"] for m in meta}
    assert len(meta) == 6
    assert {m["displayOrder"] for m in meta} == set(range(1, 7))
    for row in data:
        assert isinstance(row["dealId"], int)
        assert isinstance(row["customFieldId"], int)
        assert row["dealCustomFieldMetumId"] == row["customFieldId"]
        assert ("fieldCurrency" in row) == (types[row["customFieldId"]] == "currency")
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", row["updatedTimestamp"])
    stubs = {d["id"] for d in sandbox.iter_deals() if d.get("disabled")}
    assert stubs
    assert not stubs & {row["dealId"] for row in data}
    assert {r["dealId"] for r in deal_one["dealCustomFieldData"]} == {1}
    assert per_deal == deal_one
    assert len(lowercase["dealCustomFieldData"]) == 20  # `dealid` is not a filter: ignored
    labels = {int(m["id"]): m["fieldLabel"] for m in meta}
    expected = {
        labels[r["customFieldId"]]: r["fieldValue"] for r in deal_one["dealCustomFieldData"]
    }
    assert sandbox.deals_by_id()[1]["fields"] == expected


@pytest.mark.parametrize("switched_on", [False, True])
async def test_include_sideloads_only_when_the_sandbox_switch_is_on(switched_on: bool) -> None:
    sandbox = small(sideload_field_values=switched_on, sideload_deal_custom_fields=switched_on)
    async with in_process(sandbox) as client:
        page = await get(client, "/contacts", include="fieldValues", **{"orders[id]": "ASC"})
        singles = [await get(client, f"/contacts/{c['id']}/fieldValues") for c in page["contacts"]]
        deals = await get(client, "/deals", include="dealCustomFieldData")
        data = [await get(client, f"/deals/{d['id']}/dealCustomFieldData") for d in deals["deals"]]
    if not switched_on:  # unconfirmed on the real API (pull §1.5, §1.7): ignored by default
        assert "fieldValues" not in page
        assert "dealCustomFieldData" not in deals
        return
    expected = [v for single in singles for v in single["fieldValues"]]
    for value in expected:
        del value["created_by"], value["updated_by"]
    assert page["fieldValues"] == expected
    assert len(expected) > 20
    assert deals["dealCustomFieldData"] == [v for d in data for v in d["dealCustomFieldData"]]


async def test_the_account_limit_is_429_with_retry_after_and_ratelimit_headers(
    connect: Connect,
) -> None:
    app = create_app(KEY, contacts=10, deals=10)  # the documented 5 per second
    async with connect(app, headers=AUTH) as client:
        answers = [await client.get(f"{API}/{path}") for path in ("contacts", "deals") * 3]
        app.state.sandbox.clock.advance(1.0)
        after = await client.get(f"{API}/users")
    assert [r.status_code for r in answers] == [200] * 5 + [429]
    assert [r.headers["ratelimit-remaining"] for r in answers] == ["4", "3", "2", "1", "0", "0"]
    assert {r.headers["ratelimit-limit"] for r in answers} == {"5"}
    assert answers[5].headers["retry-after"] == "1"
    assert answers[5].json() == {"message": "Too Many Requests"}
    assert after.status_code == 200


async def test_the_limit_is_configurable_and_scales_with_the_clock() -> None:
    app = create_app(KEY, contacts=10, deals=10, per_second=2, scale=4)  # a window of 0.25 s
    async with connected("in-process", app, headers=AUTH) as client:
        answers = [await client.get(f"{API}/users") for _ in range(3)]
    assert [r.status_code for r in answers] == [200, 200, 429]
    retry_after = answers[2].headers["retry-after"]
    assert "." in retry_after  # scaled: real seconds with decimals
    assert 0 < float(retry_after) <= 0.25


async def test_deleted_records_vanish_from_lists_and_answer_404() -> None:
    sandbox = small(contacts=30, deals=30)
    before = len(sandbox.account.field_values.rows_of(4))
    sandbox.delete_contact(4)
    sandbox.delete_deal(1)
    async with in_process(sandbox) as client:
        contacts = await walk(client, "/contacts", "contacts")
        deals = await walk(client, "/deals", "deals")
        values = await walk(client, "/fieldValues", "fieldValues")
        data = await walk(client, "/dealCustomFieldData", "dealCustomFieldData")
        gone = await client.get(f"{API}/contacts/4")
        gone_deal = await client.get(f"{API}/deals/1")
        meta = await get(client, "/contacts")
    assert before > 0
    assert "4" not in {c["id"] for c in contacts}
    assert meta["meta"]["total"] == "29"
    assert "1" not in {d["id"] for d in deals}
    assert len(deals) == 29
    assert "4" not in {v["contact"] for v in values}
    assert 1 not in {r["dealId"] for r in data}
    assert (gone.status_code, gone.json()) == (
        404,
        {"message": "No Result found for Subscriber with id 4"},
    )
    assert (gone_deal.status_code, gone_deal.json()) == (
        404,
        {"message": "No Result found for Deal with id 1"},
    )
    with pytest.raises(KeyError):
        sandbox.update_contact(4, firstName="Ghost")


def test_a_rejected_mutation_changes_nothing() -> None:
    sandbox = small(contacts=20, deals=20)
    contact, deal = sandbox.contacts_by_id()[2], sandbox.deals_by_id()[3]
    with pytest.raises(KeyError, match="no custom field 'Nope'"):
        sandbox.update_contact(2, firstName="Half", fields={"Nope": "x"})
    with pytest.raises(KeyError, match="changeable 'colour'"):
        sandbox.update_deal(3, title="Half", colour="red")
    with pytest.raises(KeyError, match="no stage"):
        sandbox.update_deal(3, stage=999)
    assert sandbox.contacts_by_id()[2] == contact
    assert sandbox.deals_by_id()[3] == deal


async def test_records_show_the_documented_quirks() -> None:
    sandbox = small(contacts=300, deals=300)
    async with in_process(sandbox) as client:
        contacts = await walk(client, "/contacts", "contacts")
        deals = await walk(client, "/deals", "deals")
        single = await get(client, "/contacts/1")
        stub_id = next(d["id"] for d in deals if d["isDisabled"])
        stub = await get(client, f"/deals/{stub_id}")
    legacy = [c for c in contacts if c["deleted_at"] == "0000-00-00 00:00:00"]
    assert 0 < len(legacy) < len(contacts)
    assert all(c["bounced_date"] == "0000-00-00" for c in legacy)
    for contact in contacts:
        assert OFFSET.match(contact["cdate"])
        assert OFFSET.match(contact["udate"])
        # "UTC" timestamps that are the account's wall clock (recorded response).
        assert contact["updated_utc_timestamp"] == contact["udate"][:19].replace("T", " ")
    assert {c["udate"][-6:] for c in contacts} == {"-05:00", "-06:00"}  # summer and winter
    assert any(d.get("edate") == "0000-00-00 00:00:00" for d in deals)
    assert {d.get("nexttaskid") for d in deals if not d["isDisabled"]} == {None, "0"}
    assert set(single) >= {"contact", "fieldValues", "deals", "contactLists", "geoIps"}
    assert all(d["contact"] == "1" for d in single["deals"])
    assert set(stub["deal"]) == {"id", "isDisabled", "title"}
    assert stub["deal"]["isDisabled"]


def test_the_enriched_view_names_pipelines_stages_owners_and_fields() -> None:
    sandbox = small(contacts=20, deals=50)
    sandbox.update_deal(2, stage=7, owner=3, contact=None, fields={"Close Reason": "Budget"})
    deal, account = sandbox.deals_by_id()[2], sandbox.account
    assert (deal["pipeline_id"], deal["stage_id"], deal["stage"]) == (2, 7, account.stage(7).title)
    assert deal["pipeline"] == account.pipelines[1].title
    assert deal["contact_id"] is None
    user = account.users[2]
    assert deal["owner"] == f"{user.first_name} {user.last_name}"
    assert deal["fields"]["Close Reason"] == "Budget"
    new = sandbox.create_contact("fresh@example.com", fields={"Interests": "||Events||"})
    assert sandbox.contacts_by_id()[new]["fields"] == {"Interests": "||Events||"}
    sandbox.update_contact(new, fields={"Interests": None})
    assert sandbox.contacts_by_id()[new]["fields"] == {}


def test_the_registry_serves_it_small_by_default() -> None:
    sandbox = registry_app("activecampaign", seed=2).state.sandbox
    assert isinstance(sandbox, ActiveCampaignSandbox)
    shape = sandbox.shape
    assert (shape.contacts, shape.deals, sandbox.api_key) == (2_000, 1_500, "ac-sandbox-key")
    assert sandbox.limits[0].windows[0].limit == 5


def test_the_seed_scale_account_is_deterministic_with_the_stated_counts() -> None:
    first, again = generate(SEED_SHAPE, seed=11), generate(SEED_SHAPE, seed=11)
    assert first.contacts == again.contacts
    assert first.deals == again.deals
    assert first.field_values.value == again.field_values.value
    assert first.deal_values.value == again.deal_values.value
    assert generate(seed=12).contacts != generate(seed=11).contacts

    assert (len(first.contacts.flags), len(first.deals.flags)) == (82_000, 75_000)
    assert (len(first.fields), len(first.deal_fields)) == (8, 6)
    assert (len(first.pipelines), len(first.stages), len(first.users)) == (12, 60, 40)
    assert 2.9 < len(first.field_values) / 82_000 < 3.1
    assert 2.7 < len(first.deal_values) / 75_000 < 3.1  # hidden deals' values are not listed
