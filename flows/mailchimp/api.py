"""The Mailchimp calls the flow makes (API facts: `shared/api/push-providers.md` §3, "push §3.x").

Base `https://{dc}.api.mailchimp.com/3.0` (the connection's `api_endpoint` + `/3.0`), with
`Authorization: Bearer <token>` for OAuth or Basic `anystring:<key>` (§3.1). Members are keyed
by md5 of the lower-cased email (§3.2).

* `upsert`: `PUT …/members/{hash}` with `status_if_new: subscribed` and never `status`, so an
  unsubscribed, cleaned or pending member keeps its status (§3.3, §3.6).
* `tag`: `POST …/members/{hash}/tags`, active adds and inactive removes; tags not named are
  untouched, so Mailchimp-only tags stay (§3.4). Tags in a PUT body are unreliable (§3.3).
* `archive` (`DELETE`) and `forget` (`delete-permanent`): §3.5; an unknown member is a 404,
  which for a delete means done.
* `subscribe`: batch subscribe, ≤ 500 members a call, per-member errors (§3.7).
* `run_batch`: `POST /batches` of operations whose `body` is a JSON string, polled until
  `finished`, results read from the `.tar.gz` at `response_body_url` (§3.8).
* Listing: `count` ≤ 1000 (§3.9), with `fields=` to shrink the pages.
* `merge_fields` / `add_merge_field`: FNAME, LNAME and PHONE exist by default but can be
  removed (§3.10), so a run checks them first and puts back what is missing.

There are no rate headers and no per-second quota, only 10 simultaneous connections per account
(§3.11), which the client's limiter holds.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Sequence
from typing import Any

from shared.http import Answer, HttpClient, ProviderHTTPError

PAGE = 1000  # §3.9
SUBSCRIBE_LIMIT = 500  # §3.7
BATCH_OPERATIONS = 500  # per /batches call; the maximum is unconfirmed (§3.8)
BATCH_POLL_SECONDS = (0.5, 1, 2, 4, 8, 15)  # then every 15 s
BATCH_WAIT_SECONDS = 30 * 60
MEMBER_FIELDS = "members.email_address,members.status,members.merge_fields,members.tags,total_items"
# §3.5, §3.6: answers that will never change for this address; not retried, never pausing.
PERMANENT_TITLES = frozenset({"Member In Compliance State", "Forgotten Email Not Subscribed"})
# Their details, which is all a batch subscribe's per-member error carries (§3.7).
PERMANENT_DETAILS = ("is in a compliance state", "was permanently deleted")


def subscriber_hash(email: str) -> str:
    """md5 hex of the lower-cased email (push §3.2)."""
    return hashlib.md5(email.lower().encode()).hexdigest()


def is_permanent(body: Any) -> bool:
    """Whether a refusal (a problem document, or an error's text) names a compliance state or
    a forgotten address (push §3.5, §3.6)."""
    if isinstance(body, dict):
        return body.get("title") in PERMANENT_TITLES
    if not isinstance(body, str):
        return False
    return any(title in body for title in PERMANENT_TITLES) or any(
        detail in body for detail in PERMANENT_DETAILS
    )


class Mailchimp:
    """Typed calls over one connection's `HttpClient`, for one audience."""

    def __init__(self, client: HttpClient, list_id: str = "") -> None:
        self.client = client
        self.list_id = list_id

    def _member(self, email: str) -> str:
        return f"lists/{self.list_id}/members/{subscriber_hash(email)}"

    async def _answer(self, method: str, path: str, body: Any = None) -> Answer:
        """A write whose refusal (4xx) is the record's outcome, not the run's."""
        try:
            response = await self.client.request(method, path, json_body=body, idempotent=True)
        except ProviderHTTPError as error:
            return Answer(error.status or 0, error.body)
        return Answer(response.status_code, response.json() if response.content else None)

    async def audiences(self) -> list[dict[str, Any]]:
        """Every audience (list) of the account: id, name, member count."""
        params = {"count": PAGE, "fields": "lists.id,lists.name,lists.stats.member_count"}
        body = await self.client.get_json("lists", params)
        return list(body.get("lists") or [])

    async def merge_fields(self) -> list[str]:
        """The audience's merge tags (push §3.10: the defaults may have been removed)."""
        params = {"count": PAGE, "fields": "merge_fields.tag,total_items"}
        body = await self.client.get_json(f"lists/{self.list_id}/merge-fields", params)
        return [str(f.get("tag")) for f in body.get("merge_fields") or []]

    async def add_merge_field(self, tag: str, name: str, kind: str) -> None:
        """Create a merge field; a phone takes any format ("International", push §3.10)."""
        body: dict[str, Any] = {"tag": tag, "name": name, "type": kind, "required": False}
        if kind == "phone":
            body["options"] = {"phone_format": "International"}
        await self.client.request(
            "POST", f"lists/{self.list_id}/merge-fields", json_body=body, parse_json=True
        )

    async def upsert(self, email: str, merge_fields: dict[str, str]) -> Answer:
        body = {"email_address": email, "status_if_new": "subscribed", "merge_fields": merge_fields}
        return await self._answer("PUT", self._member(email), body)

    async def tag(self, email: str, active: Sequence[str], inactive: Sequence[str]) -> Answer:
        return await self._answer("POST", self._member(email) + "/tags", tag_body(active, inactive))

    async def archive(self, email: str) -> Answer:
        return await self._answer("DELETE", self._member(email))

    async def forget(self, email: str) -> Answer:
        return await self._answer("POST", self._member(email) + "/actions/delete-permanent")

    async def members(self, offset: int) -> tuple[list[dict[str, Any]], int]:
        """One page of the audience's members (every status) and how many there are."""
        params = {"count": PAGE, "offset": offset, "fields": MEMBER_FIELDS}
        body = await self.client.get_json(f"lists/{self.list_id}/members", params)
        return list(body.get("members") or []), int(body.get("total_items") or 0)

    async def subscribe(self, members: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Batch subscribe ≤ 500 members, updating existing ones (their status only if sent)."""
        body = {"members": list(members), "update_existing": True}
        response = await self.client.request(
            "POST", f"lists/{self.list_id}", json_body=body, parse_json=True, idempotent=True
        )
        answer: dict[str, Any] = response.json()
        return answer

    async def run_batch(self, operations: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Submit operations, wait for them, return each one's result (`operation_id`,
        `status_code`, decoded `response`)."""
        response = await self.client.request(
            "POST",
            "batches",
            json_body={"operations": list(operations)},
            parse_json=True,
            idempotent=True,  # every operation is an idempotent write
        )
        batch_id = str(response.json()["id"])
        waited, attempt = 0.0, 0
        while True:
            status = await self.client.get_json(f"batches/{batch_id}")
            if status.get("status") == "finished":
                return await self._results(str(status.get("response_body_url") or ""))
            if waited >= BATCH_WAIT_SECONDS:
                raise TimeoutError(f"Mailchimp batch {batch_id} did not finish in {waited:.0f} s")
            pause = BATCH_POLL_SECONDS[min(attempt, len(BATCH_POLL_SECONDS) - 1)]
            await asyncio.sleep(pause)
            waited, attempt = waited + pause, attempt + 1

    async def _results(self, url: str) -> list[dict[str, Any]]:
        """The archive's JSON files, merged (§3.8); the URL needs no credentials."""
        if not url:
            return []
        content = await self.client.download(url)
        results: list[dict[str, Any]] = []
        with tarfile.open(fileobj=io.BytesIO(_gunzip(content)), mode="r:") as archive:
            for member in archive.getmembers():
                handle = archive.extractfile(member)
                if handle is None or not member.name.endswith(".json"):
                    continue
                for item in json.loads(handle.read()):
                    text = item.get("response") or ""
                    try:
                        decoded = json.loads(text) if text else None
                    except ValueError:
                        decoded = text
                    results.append({**item, "response": decoded})
        return results


def tag_body(active: Sequence[str], inactive: Sequence[str]) -> dict[str, Any]:
    tags = [{"name": n, "status": "active"} for n in active]
    tags += [{"name": n, "status": "inactive"} for n in inactive]
    return {"tags": tags, "is_syncing": True}  # §3.4: a mirror must not fire automations


def _gunzip(content: bytes) -> bytes:
    # httpx already undoes a Content-Encoding: gzip; a plain .tar.gz body is still compressed.
    return gzip.decompress(content) if content[:2] == b"\x1f\x8b" else content
