"""The Brevo calls the flow makes (API facts: `shared/api/push-providers.md` §2, "push §2.x").

Base `https://api.brevo.com/v3`, header `api-key` (§2.1). Every `/contacts/**` call shares one
bucket of 10 requests a second and 36,000 an hour (§2.7); `/processes/**` falls under "other
endpoints", 100 an hour, so import processes are polled sparingly.

* `upsert`: `POST /contacts` with `updateEnabled` answers 201 `{id}` for a new contact and 204
  with no body for an update (§2.2), so an update's id is read back with `GET /contacts/{email}`.
* `import_contacts`: `POST /contacts/import` with `jsonBody` (≤ 10 MB, Brevo advises ~8 MB;
  §2.5) answers 202 `{processId}`; the contacts exist once `GET /processes/{id}` says
  `completed`. Rows Brevo rejects are skipped silently, so the flow reads ids back and sends
  the missing ones one by one, to get Brevo's own message.
* Opt-outs leave the list with `POST /contacts/lists/{id}/contacts/remove` (≤ 150 emails a call)
  or are blacklisted with `PUT /contacts/{email}`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

from shared.http import Answer as ProviderAnswer
from shared.http import HttpClient, ProviderHTTPError

PAGE_LIMIT = 1000  # GET /contacts (push §2.4)
REMOVE_LIMIT = 150  # emails per list removal (spec: removeContactFromListByEmails)


class Answer(ProviderAnswer):
    """Brevo's answer to one contact write."""

    @property
    def contact_id(self) -> int | None:
        """The id a 201 carries (a 204 carries none)."""
        value = self.body.get("id") if isinstance(self.body, dict) else None
        return int(value) if isinstance(value, int | str) and str(value).isdigit() else None


class Brevo:
    """Typed calls over one run's `HttpClient`."""

    def __init__(self, client: HttpClient) -> None:
        self.client = client

    async def attributes(self) -> list[dict[str, Any]]:
        body = await self.client.get_json("contacts/attributes")
        return list(body.get("attributes") or [])

    async def create_attribute(self, name: str, kind: str) -> None:
        """A `normal` attribute (push §2.6); 201 with no body."""
        await self.client.request(
            "POST", f"contacts/attributes/normal/{name}", json_body={"type": kind}
        )

    async def upsert(self, contact: dict[str, Any]) -> Answer:
        """Create or update one contact; a refusal (4xx) is an `Answer` too."""
        try:
            response = await self.client.request(
                "POST", "contacts", json_body={**contact, "updateEnabled": True}, idempotent=True
            )
        except ProviderHTTPError as error:
            return Answer(error.status or 0, error.body)
        body = response.json() if response.content else None
        return Answer(response.status_code, body)

    async def contact_id(self, email: str) -> int | None:
        """The id of the contact with this address; None when Brevo has none."""
        try:
            body = await self.client.get_json(f"contacts/{quote(email, safe='')}")
        except ProviderHTTPError as error:
            if error.status == 404:
                return None
            raise
        return int(body["id"])

    async def import_contacts(self, rows: Sequence[dict[str, Any]], list_ids: list[int]) -> int:
        """Start an import; returns its process id."""
        body: dict[str, Any] = {
            "jsonBody": list(rows),
            "updateExistingContacts": True,
            "emptyContactsAttributes": False,
            "disableNotification": True,
        }
        if list_ids:
            body["listIds"] = list_ids
        response = await self.client.request(
            "POST", "contacts/import", json_body=body, parse_json=True
        )
        return int(response.json()["processId"])

    async def process_status(self, process_id: int) -> str:
        body = await self.client.get_json(f"processes/{process_id}")
        return str(body.get("status"))

    async def contacts(
        self, offset: int, modified_since: datetime | None = None
    ) -> tuple[list[dict[str, Any]], int]:
        """One page of contacts, oldest first, and how many match."""
        params: dict[str, Any] = {"limit": PAGE_LIMIT, "offset": offset, "sort": "asc"}
        if modified_since is not None:
            params["modifiedSince"] = modified_since.strftime("%Y-%m-%dT%H:%M:%S.000Z")
        body = await self.client.get_json("contacts", params)
        return list(body.get("contacts") or []), int(body.get("count") or 0)

    async def unlink(self, list_id: int, emails: Sequence[str]) -> None:
        """Take up to 150 addresses off a list (unknown ones are reported, not refused)."""
        await self.client.request(
            "POST",
            f"contacts/lists/{list_id}/contacts/remove",
            json_body={"emails": list(emails)},
            idempotent=True,
        )

    async def blacklist(self, email: str) -> None:
        try:
            await self.client.request(
                "PUT",
                f"contacts/{quote(email, safe='')}",
                json_body={"emailBlacklisted": True},
            )
        except ProviderHTTPError as error:
            if error.status != 404:  # a contact that is gone needs no blacklisting
                raise
