"""The MailerLite calls the flow makes, and what their answers mean for one user.

API facts: `shared/api/push-providers.md` §1 (cited "push §1.x"). Base URL
`https://connect.mailerlite.com/api`, `Authorization: Bearer <token>` (§1.1).

* `POST subscribers` upserts by email: 201 created, 200 updated; omitted fields and groups are
  left alone (§1.2). No `status` is sent, so an unsubscribed subscriber stays unsubscribed: the
  answer's `status` tells us, and the user counts as skipped (§1.2: the new API cannot
  re-activate one anyway).
* `POST batch` runs up to 50 requests, answering 200 with a code and body per item (§1.6).
  A batch of upserts only is an *import*: 5 per minute, on top of the account's 120 requests
  per minute (§1.6, §1.8). `import_batch` waits for the import pace, then the account pace.
* Fields are addressed by key, a slug of the name (§1.4); groups by id (§1.5). Both lists are
  page-based.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shared.http import Answer as ProviderAnswer
from shared.http import HttpClient, ProviderHTTPError
from shared.limits import Limiter

MAX_BATCH = 50  # push §1.6
PAGE_LIMIT = 100  # fields and groups per page
# Subscriber statuses a push leaves alone (push §1.2): the user is skipped, with the reason.
INACTIVE_STATUSES = frozenset({"unsubscribed", "bounced", "junk"})


class Answer(ProviderAnswer):
    """MailerLite's answer to one upsert, from its own request or from inside a batch."""

    @property
    def subscriber(self) -> dict[str, Any]:
        data = self.body.get("data") if isinstance(self.body, dict) else None
        return data if isinstance(data, dict) else {}

    @property
    def status(self) -> str | None:
        status = self.subscriber.get("status")
        return status if isinstance(status, str) else None

    def invalid_keys(self) -> list[str]:
        """The attributes a 422 names (`email`, `fields.x`, `groups.0`, …)."""
        errors = self.body.get("errors") if isinstance(self.body, dict) else None
        return list(errors) if isinstance(errors, dict) else []


class MailerLite:
    """Typed calls over one run's `HttpClient`; `imports` paces import batches."""

    def __init__(self, client: HttpClient, imports: Limiter) -> None:
        self.client = client
        self.imports = imports

    async def _pages(self, path: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        page = 1
        while True:
            body = await self.client.get_json(path, {"limit": PAGE_LIMIT, "page": page})
            items += body.get("data") or []
            meta = body.get("meta") or {}
            if page >= int(meta.get("last_page") or page):
                return items
            page += 1

    async def fields(self) -> list[dict[str, Any]]:
        """Every field of the account: `id`, `name`, `key`, `type` (push §1.4)."""
        return await self._pages("fields")

    async def create_field(self, name: str, kind: str) -> dict[str, Any]:
        """Create a field; its `key` is what subscriber `fields` must use (push §1.4).
        Not idempotent (a second call makes a second field), so it is never retried blindly."""
        response = await self.client.request(
            "POST", "fields", json_body={"name": name, "type": kind}, parse_json=True
        )
        data: dict[str, Any] = response.json()["data"]
        return data

    async def groups(self) -> list[dict[str, Any]]:
        """Every group of the account (push §1.5)."""
        return await self._pages("groups")

    async def upsert(self, payload: dict[str, Any]) -> Answer:
        """One `POST subscribers`; a refusal (4xx) is an `Answer` too, for the user's record."""
        try:
            response = await self.client.request(
                "POST", "subscribers", json_body=payload, idempotent=True, parse_json=True
            )
        except ProviderHTTPError as error:
            return Answer(error.status or 0, error.body)
        return Answer(response.status_code, response.json())

    async def import_batch(self, payloads: Sequence[dict[str, Any]]) -> list[Answer]:
        """Up to 50 upserts in one `POST batch`: an import (push §1.6), one answer each.

        An upsert repeated is harmless, so a lost answer is retried. The request counts
        against the import lane and the account; an import 429 (if the pace were ever wrong)
        slows both and is retried after its Retry-After.
        """
        if not 0 < len(payloads) <= MAX_BATCH:
            raise ValueError(f"a batch holds 1 to {MAX_BATCH} upserts, not {len(payloads)}")
        requests = [{"method": "POST", "path": "api/subscribers", "body": p} for p in payloads]
        response = await self.client.request(
            "POST",
            "batch",
            json_body={"requests": requests},
            idempotent=True,
            parse_json=True,
            lanes=[self.imports],
        )
        answers = response.json().get("responses") or []
        if len(answers) != len(payloads):
            raise ValueError(f"MailerLite answered {len(answers)} of {len(payloads)} batch items")
        return [Answer(int(a.get("code") or 0), a.get("body")) for a in answers]
