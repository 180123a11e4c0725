"""HTTP core: retries, Retry-After, typed errors, request counting and redaction."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from shared.http import (
    HttpClient,
    ProviderError,
    ProviderHTTPError,
    RetriesExhausted,
    RetryPolicy,
    parse_retry_after,
)
from shared.limits import Limiter, LimitSpec
from shared.redact import register_secret, registered_secrets

API_KEY = "sk-test-0f3c9a7b51e24d"  # registered like settings would register it
Script = list[httpx.Response | Exception]


class Sleeps:
    """The injected sleeper and clock: records every wait and moves time on instead."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self.now = 0.0

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


def scripted(script: Script, seen: list[httpx.Request]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        step = script.pop(0)
        if isinstance(step, Exception):
            raise step
        return step

    return httpx.MockTransport(handler)


@pytest.fixture
def make_client() -> Callable[..., tuple[HttpClient, Sleeps, list[httpx.Request]]]:
    register_secret(API_KEY)

    def make(
        script: Script, rate: float | None = None, **policy: object
    ) -> tuple[HttpClient, Sleeps, list[httpx.Request]]:
        sleeps, seen = Sleeps(), []
        client = HttpClient(
            "acme",
            "https://api.acme.test/v1",
            headers={"Api-Token": API_KEY},
            limiter=Limiter(
                LimitSpec("acme", rate_per_second=rate), clock=sleeps.clock, sleep=sleeps
            ),
            policy=RetryPolicy(sleep=sleeps, jitter=lambda cap: cap, **policy),  # type: ignore[arg-type]
            transport=scripted(script, seen),
        )
        return client, sleeps, seen

    return make


async def test_429_with_retry_after_waits_exactly_that_long(make_client) -> None:
    client, sleeps, seen = make_client(
        [
            httpx.Response(
                429, headers={"Retry-After": "3"}, json={"message": "Too Many Requests"}
            ),
            httpx.Response(200, json={"ok": True}),
        ]
    )
    assert await client.get_json("/contacts") == {"ok": True}
    assert sleeps.waits == [3.0]
    assert client.requests == 2
    assert len(seen) == 2
    assert seen[0].headers["Api-Token"] == API_KEY  # the key travels in the header


async def test_429_slows_the_limiter_pace(make_client) -> None:
    client, _, _ = make_client(
        [httpx.Response(429, headers={"Retry-After": "1"}), httpx.Response(200, json={})],
        rate=10,
    )
    before = client.limiter.interval
    await client.get_json("/contacts")
    assert client.limiter.throttles == 1
    assert client.limiter.interval > before


def test_retry_after_as_http_date_is_seconds_from_now() -> None:
    when = datetime.now(UTC) + timedelta(seconds=30)
    response = httpx.Response(429, headers={"Retry-After": format_datetime(when, usegmt=True)})
    assert 28 <= (parse_retry_after(response) or 0) <= 30


async def test_503_backs_off_exponentially_then_succeeds(make_client) -> None:
    client, sleeps, _ = make_client(
        [
            httpx.Response(503, text="Service Unavailable"),
            httpx.Response(503, text="Service Unavailable"),
            httpx.Response(200, json={"contacts": []}),
        ]
    )
    assert await client.get_json("/contacts") == {"contacts": []}
    assert sleeps.waits == [0.5, 1.0]  # base 0.5 s doubling (jitter pinned to its cap here)


async def test_backoff_is_capped(make_client) -> None:
    client, sleeps, _ = make_client(
        [httpx.Response(500)] * 5 + [httpx.Response(200, json={})], backoff_max=2.0
    )
    await client.get_json("/x")
    assert sleeps.waits == [0.5, 1.0, 2.0, 2.0, 2.0]


async def test_400_is_not_retried_and_carries_the_provider_message(make_client) -> None:
    client, sleeps, seen = make_client(
        [
            httpx.Response(
                422,
                json={
                    "message": "The given data was invalid.",
                    "errors": {"email": ["The email must be a valid email."]},
                },
            ),
        ]
    )
    with pytest.raises(ProviderHTTPError) as caught:
        await client.request("POST", "/subscribers", json_body={"email": "nope"})
    error = caught.value
    assert (error.status, error.method, len(seen), sleeps.waits) == (422, "POST", 1, [])
    assert "The given data was invalid." in error.message
    assert "The email must be a valid email." in error.message
    assert error.url == "https://api.acme.test/v1/subscribers"


async def test_exhausted_retries_raise_a_typed_error(make_client) -> None:
    client, sleeps, seen = make_client(
        [httpx.Response(502, text="Bad gateway")] * 4, max_attempts=4
    )
    with pytest.raises(RetriesExhausted) as caught:
        await client.get_json("/deals")
    assert caught.value.status == 502
    assert len(seen) == 4
    assert len(sleeps.waits) == 3
    assert "gave up after 4 attempts" in str(caught.value)


async def test_transport_errors_and_malformed_json_are_retried(make_client) -> None:
    client, sleeps, _ = make_client(
        [
            httpx.ConnectError("connection reset by peer"),
            httpx.ReadTimeout("timed out"),
            httpx.Response(200, text="{not json"),
            httpx.Response(200, json={"fine": 1}),
        ]
    )
    assert await client.get_json("/x") == {"fine": 1}
    assert len(sleeps.waits) == 3
    assert client.requests == 4


async def test_api_key_never_reaches_logs_or_exception_text(make_client, caplog) -> None:
    from shared.redact import install_log_redaction

    install_log_redaction()
    caplog.set_level(logging.DEBUG)
    echo = {"message": f"Invalid token {API_KEY}", "request": {"Api-Token": API_KEY}}
    client, _, _ = make_client(
        [
            httpx.Response(503, json=echo),
            httpx.Response(401, json=echo),
        ]
    )
    with pytest.raises(ProviderHTTPError) as caught:
        await client.request("GET", "/me", params={"api_key": API_KEY, "page": 2})
    texts = [
        str(caught.value),
        repr(caught.value),
        caught.value.message,
        caught.value.url,
        str(caught.value.body),
        caplog.text,
    ]
    assert caplog.records, "the retry should have been logged"
    for text in texts:
        assert API_KEY not in text
    assert "***" in caught.value.message
    assert "api_key=***" in caught.value.url


def test_retry_after_that_is_not_a_finite_number_is_ignored() -> None:
    for value in ("nan", "inf", "soon"):
        assert parse_retry_after(httpx.Response(429, headers={"Retry-After": value})) is None


async def test_a_key_cut_by_truncation_is_still_masked(make_client) -> None:
    body = "x" * (990) + f" bad key {API_KEY} " + "y" * 500  # the key straddles character 1000
    client, _, _ = make_client([httpx.Response(401, text=body)])
    with pytest.raises(ProviderHTTPError) as caught:
        await client.get_json("/me")
    texts = [caught.value.message, str(caught.value.body), str(caught.value)]
    for text in texts:
        assert not any(API_KEY[i : i + 8] in text for i in range(len(API_KEY) - 7))


@pytest.mark.parametrize(
    ("method", "failure", "attempts", "error"),
    [
        ("POST", httpx.Response(503), 1, "ProviderError"),  # may have been applied: no retry
        ("POST", httpx.ReadTimeout("lost response"), 1, "ProviderError"),
        ("POST", httpx.ConnectError("refused"), 3, "RetriesExhausted"),  # never sent: retry
        ("POST", httpx.Response(429), 3, "RetriesExhausted"),  # refused, not applied: retry
        ("PUT", httpx.Response(503), 3, "RetriesExhausted"),  # idempotent: retry
        ("POST", httpx.Response(200, text="{cut"), 1, "ProviderError"),  # applied, answer garbled
    ],
)
async def test_requests_are_retried_only_when_repeating_them_is_safe(
    make_client, method: str, failure: object, attempts: int, error: str
) -> None:
    client, _, seen = make_client([failure] * 3, max_attempts=3)
    with pytest.raises(ProviderError) as caught:
        await client.request(method, "/subscribers", json_body={"email": "a@b.c"}, parse_json=True)
    assert type(caught.value).__name__ == error
    assert len(seen) == attempts


async def test_an_upsert_post_can_be_marked_idempotent(make_client) -> None:
    client, _, seen = make_client([httpx.Response(503), httpx.Response(200, json={"id": 1})])
    response = await client.request("POST", "/contacts", json_body={}, idempotent=True)
    assert response.status_code == 200
    assert len(seen) == 2


def test_runtime_credentials_are_registered_for_redaction() -> None:
    HttpClient(
        "acme",
        "https://api.acme.test",
        headers={"Authorization": "Bearer rt-oauth-77a1c9"},
        auth=("user", "basic-pass-31337"),
    )
    secrets = registered_secrets()
    assert {"rt-oauth-77a1c9", "basic-pass-31337"} <= secrets
    assert base64.b64encode(b"user:basic-pass-31337").decode() in secrets


async def test_a_lane_paces_its_requests_and_a_429_slows_it_too(make_client) -> None:
    client, sleeps, seen = make_client(
        [
            httpx.Response(200, json={}),
            httpx.Response(429, headers={"Retry-After": "2"}),
            httpx.Response(200, json={}),
            httpx.Response(200, json={}),
        ],
        rate=100,
    )
    imports = Limiter(
        LimitSpec("acme-imports", rate_per_second=1.0), clock=sleeps.clock, sleep=sleeps
    )
    await client.request("POST", "/batch", lanes=[imports])
    await client.request("POST", "/batch", lanes=[imports])  # 429, then its retry
    assert len(seen) == 3
    assert imports.throttles == client.limiter.throttles == 1
    # One import slot a second: the second request waited ~1 s for it, and its retry waited
    # for the Retry-After and then the lane's halved pace (2 s a slot).
    assert sleeps.waits[0] == pytest.approx(1.02 - imports.tolerance)
    assert sum(sleeps.waits) >= 1.0 + 2.0
    await client.request("GET", "/contacts")  # no lane: only the account's pace
    assert len(seen) == 4
