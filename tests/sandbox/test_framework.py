"""The shared sandbox pipeline: limits, time scale, latency, request log, and both modes."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from sandbox.base import Latency
from sandbox.limits import (
    ConcurrencyLimit,
    Quota,
    RateLimit,
    Window,
    json_rejection,
    no_headers,
    problem_rejection,
    ratelimit_headers,
    sib_ratelimit_headers,
    x_ratelimit_headers,
)
from sandbox.selfcheck import create_app
from tests.sandbox.conftest import MODES, Connect, PathSandbox, connected

KEY = "sandbox-test-key"
AUTH = {"X-Api-Key": KEY}


async def test_limit_headers_count_down_then_429_in_the_providers_words(connect: Connect) -> None:
    app = create_app(KEY, per_second=3)
    async with connect(app, headers=AUTH) as client:
        answers = [await client.get("/echo") for _ in range(4)]
        app.state.sandbox.clock.advance(1.0)  # the window slides past all three
        after = await client.get("/echo")

    assert [r.status_code for r in answers] == [200, 200, 200, 429]
    assert [r.headers["x-ratelimit-remaining"] for r in answers] == ["2", "1", "0", "0"]
    assert {r.headers["x-ratelimit-limit"] for r in answers} == {"3"}
    assert "retry-after" not in answers[2].headers
    assert answers[3].headers["retry-after"] == "1"
    assert answers[3].json() == {"message": "Too Many Attempts."}
    assert (after.status_code, after.headers["x-ratelimit-remaining"]) == (200, "2")


async def test_unauthenticated_requests_get_401_and_spend_no_quota(connect: Connect) -> None:
    app = create_app(KEY, per_second=1)
    async with connect(app) as client:
        denied = [await client.get("/echo", headers={"X-Api-Key": "wrong"}) for _ in range(3)]
        allowed = await client.get("/echo", headers=AUTH)
    assert [r.status_code for r in denied] == [401, 401, 401]
    assert denied[0].json() == {"message": "Unauthenticated."}
    assert allowed.status_code == 200


async def test_every_window_applies_at_once_and_only_under_its_paths(connect: Connect) -> None:
    brevo_like = RateLimit(
        Window(3, 1.0),
        Window(5, 60.0),
        paths=("/v3/contacts",),
        headers=sib_ratelimit_headers,
        reject=json_rejection({"code": "too_many_requests", "message": "Too many requests"}),
    )
    app = PathSandbox(brevo_like).app
    async with connect(app) as client:
        first = [await client.get(f"/v3/contacts/{n}") for n in range(4)]
        elsewhere = await client.get("/v3/account")
        unrelated = await client.get("/v3/contactsfolders")
        app.state.sandbox.clock.advance(1.0)  # the 3/s window frees; the 5/min one does not
        second = [await client.post("/v3/contacts") for _ in range(3)]

    assert [r.status_code for r in first] == [200, 200, 200, 429]
    assert [r.headers["x-sib-ratelimit-remaining"] for r in first] == ["2", "1", "0", "0"]
    assert first[3].json() == {"code": "too_many_requests", "message": "Too many requests"}
    assert "retry-after" not in first[3].headers  # Brevo sends none: reset is the wait
    assert first[3].headers["x-sib-ratelimit-reset"] == "1"
    assert all(0 < float(r.headers["x-sib-ratelimit-reset"]) <= 1 for r in first[:3])
    for response in (elsewhere, unrelated):
        assert response.status_code == 200
        assert not any(h.startswith("x-sib-") for h in response.headers)

    assert [r.status_code for r in second] == [200, 200, 429]
    # Now the hour-ish window is the tight one: its numbers are the ones reported.
    assert [r.headers["x-sib-ratelimit-limit"] for r in second] == ["5", "5", "5"]
    assert [r.headers["x-sib-ratelimit-remaining"] for r in second] == ["1", "0", "0"]
    assert 58 < float(second[2].headers["x-sib-ratelimit-reset"]) <= 60


@pytest.mark.parametrize(
    ("writer", "admitted", "rejected"),
    [
        (
            x_ratelimit_headers,  # MailerLite
            {"X-RateLimit-Limit": "120", "X-RateLimit-Remaining": "7"},
            {"X-RateLimit-Limit": "120", "X-RateLimit-Remaining": "0", "Retry-After": "31"},
        ),
        (
            ratelimit_headers,  # ActiveCampaign
            {"RateLimit-Limit": "120", "RateLimit-Remaining": "7"},
            {"RateLimit-Limit": "120", "RateLimit-Remaining": "0", "Retry-After": "31"},
        ),
        (
            sib_ratelimit_headers,  # Brevo
            {
                "x-sib-ratelimit-limit": "120",
                "x-sib-ratelimit-remaining": "7",
                "x-sib-ratelimit-reset": "13",
            },
            {
                "x-sib-ratelimit-limit": "120",
                "x-sib-ratelimit-remaining": "0",
                "x-sib-ratelimit-reset": "31",
            },
        ),
        (no_headers, {}, {}),  # Mailchimp, Magento
    ],
)
def test_header_writers_speak_each_providers_dialect(
    writer: Any, admitted: dict[str, str], rejected: dict[str, str]
) -> None:
    assert writer(Quota(120, 7, reset=12.2)) == admitted
    assert writer(Quota(120, 0, reset=30.4, retry_after=30.4)) == rejected


@pytest.mark.parametrize(
    ("reject", "content_type", "body"),
    [
        (
            json_rejection({"message": "Too Many Requests", "trace": None}),  # Magento
            "application/json",
            {"message": "Too Many Requests", "trace": None},
        ),
        (
            problem_rejection(),  # Mailchimp
            "application/problem+json",
            {
                "type": "https://mailchimp.com/developer/marketing/docs/errors/",
                "title": "Too Many Requests",
                "status": 429,
                "detail": "You have exceeded the limit of simultaneous connections.",
            },
        ),
    ],
)
async def test_a_429_body_is_the_providers_own(
    connect: Connect, reject: Any, content_type: str, body: dict[str, Any]
) -> None:
    app = PathSandbox(RateLimit(Window(1, 60.0), reject=reject)).app
    async with connect(app) as client:
        await client.get("/V1/orders")
        response = await client.get("/V1/orders")
    assert response.status_code == 429
    assert response.headers["content-type"] == content_type
    answer = response.json()
    answer.pop("instance", None)  # a fresh id per problem document
    assert answer == body


@pytest.mark.serial
async def test_one_request_over_the_concurrency_cap_gets_429(connect: Connect) -> None:
    mailchimp_like = ConcurrencyLimit(10, reject=problem_rejection())
    app = PathSandbox(mailchimp_like, latency=0.2).app
    async with connect(app) as client:
        burst = await asyncio.gather(*(client.get("/3.0/lists") for _ in range(11)))
        later = await client.get("/3.0/lists")  # the ten have finished: places are free again

    statuses = sorted(r.status_code for r in burst)
    assert statuses == [200] * 10 + [429]
    rejected = next(r for r in burst if r.status_code == 429)
    assert rejected.headers["content-type"] == "application/problem+json"
    assert rejected.json()["title"] == "Too Many Requests"
    assert later.status_code == 200
    assert mailchimp_like.in_flight == 0


@pytest.mark.serial
async def test_scale_30_runs_a_minute_limit_in_two_seconds_and_asks_for_real_seconds(
    connect: Connect,
) -> None:
    # Scale 30, not 60: 120 sequential round trips must fit in the window even on a busy CI box.
    mailerlite_like = RateLimit(Window(120, 60.0), headers=x_ratelimit_headers)
    app = PathSandbox(mailerlite_like, scale=30).app
    async with connect(app) as client:
        started = time.monotonic()
        admitted = [await client.get("/api/subscribers") for _ in range(120)]
        took = time.monotonic() - started
        over = await client.get("/api/subscribers")
        since_first = time.monotonic() - started
        retry_after = over.headers["retry-after"]
        await asyncio.sleep(float(retry_after))  # what a real client would do
        again = await client.get("/api/subscribers")

    assert {r.status_code for r in admitted} == {200}
    assert took < 2.0  # 120 per sandbox minute = 120 per two real seconds
    assert over.status_code == 429
    assert "." in retry_after  # scaled: milliseconds, not whole seconds
    # The first request leaves the window two real seconds after it arrived.
    assert 2.0 - since_first - 0.05 <= float(retry_after) <= 2.0
    assert again.status_code == 200


@pytest.mark.serial
async def test_latency_delays_each_answer_and_can_change_while_running(connect: Connect) -> None:
    app = create_app(KEY, latency=0.05, jitter=0.02)
    sandbox = app.state.sandbox

    async def timed() -> float:
        started = time.monotonic()
        (await client.get("/echo")).raise_for_status()
        return time.monotonic() - started

    async with connect(app, headers=AUTH) as client:
        jittered = [await timed() for _ in range(5)]
        sandbox.latency = Latency(0.15)
        slower = await timed()
        sandbox.latency = Latency()
        undelayed = await timed()

    assert min(jittered) >= 0.05
    assert slower >= 0.15
    assert undelayed < 0.1


async def test_the_log_records_what_arrived_and_how_it_ended(connect: Connect) -> None:
    app = create_app(KEY)
    sandbox = app.state.sandbox
    async with connect(app) as client:
        before = time.time()
        await client.put("/items/a-1", params={"x": "1", "y": "2"}, json={"email": "a@x.test"})
        await client.get("/items", params={"page": "2"}, headers=AUTH)
        after = time.time()

    put, get = sandbox.log
    assert (put.method, put.path, put.status) == ("PUT", "/items/a-1", 401)
    assert (put.query, put.query_string, put.body) == (
        {"x": "1", "y": "2"},
        "x=1&y=2",
        {"email": "a@x.test"},
    )
    assert (get.method, get.path, get.query, get.body, get.status) == (
        "GET",
        "/items",
        {"page": "2"},
        None,
        200,
    )
    assert get.headers["x-api-key"] == KEY
    assert before <= put.at <= get.at <= after
    assert (put.concurrency, get.concurrency, put.fault) == (1, 1, None)
    log = sandbox.log
    sandbox.clear_log()
    assert log is sandbox.log
    assert log == []


async def test_the_log_keeps_text_bodies_as_text(connect: Connect) -> None:
    sandbox = PathSandbox()
    async with connect(sandbox.app) as client:
        await client.post("/import", content=b"email\na@x.test\n")
    assert sandbox.log[0].body == "email\na@x.test\n"


@pytest.mark.serial
async def test_concurrency_at_arrival_counts_every_request_in_flight(connect: Connect) -> None:
    app = create_app(KEY, latency=0.1)
    sandbox = app.state.sandbox
    async with connect(app, headers=AUTH) as client:
        await asyncio.gather(*(client.get("/echo") for _ in range(8)))
        await client.get("/echo")  # alone again
    assert sorted(e.concurrency for e in sandbox.log[:8]) == list(range(1, 9))
    assert sandbox.log[8].concurrency == 1
    assert sandbox.in_flight == 0


async def transcript(mode: str) -> list[tuple[Any, ...]]:
    """One scripted session with the self-check sandbox: everything a client can observe."""
    app = create_app(KEY, per_second=3)
    sandbox = app.state.sandbox
    seen = []
    async with connected(mode, app) as client:
        steps = [
            lambda: client.get("/echo"),
            lambda: client.put("/items/k1", json={"email": "one@x.test"}, headers=AUTH),
            lambda: client.put("/items/k1", json={"email": "uno@x.test"}, headers=AUTH),
            lambda: client.put("/items/k2", json={"email": "two"}, headers=AUTH),
            lambda: client.get("/items", headers=AUTH),
            lambda: sandbox.clock.advance(1.0),
            lambda: client.get("/items", headers=AUTH),
            lambda: sandbox.faults.add("503"),
            lambda: client.get("/echo", headers=AUTH),
            lambda: sandbox.faults.add("malformed"),
            lambda: client.get("/items", headers=AUTH),
        ]
        for step in steps:
            response = step()
            if response is None:
                continue
            response = await response
            seen.append(
                (
                    response.status_code,
                    response.headers.get("content-type"),
                    response.headers.get("x-ratelimit-remaining"),
                    response.headers.get("retry-after"),
                    response.content,
                )
            )
    return seen


async def test_in_process_and_loopback_give_the_same_answers() -> None:
    in_process, loopback = [await transcript(mode) for mode in MODES]
    assert in_process == loopback
    assert [step[0] for step in in_process] == [401, 201, 200, 422, 429, 200, 503, 200]
    assert in_process[6][4] == b'{"message":"Service Unavailable"}'
    with pytest.raises(json.JSONDecodeError):
        json.loads(in_process[7][4])
