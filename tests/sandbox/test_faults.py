"""The fault queue: each kind reaches the client as the failure it stands for, in both modes."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from sandbox.selfcheck import create_app
from tests.sandbox.conftest import Connect

KEY = "sandbox-test-key"
AUTH = {"X-Api-Key": KEY}


async def test_a_queued_429_carries_the_retry_after_asked_for(connect: Connect) -> None:
    app = create_app(KEY)
    app.state.sandbox.faults.add("429", retry_after=7)
    async with connect(app, headers=AUTH) as client:
        throttled = await client.get("/echo")
        after = await client.get("/echo")
    assert (throttled.status_code, throttled.headers["retry-after"]) == (429, "7")
    assert throttled.json() == {"message": "Too Many Requests"}
    assert after.status_code == 200


async def test_a_queued_429_speaks_like_the_limit_covering_its_path(connect: Connect) -> None:
    app = create_app(KEY, per_second=10)
    app.state.sandbox.faults.add("429", retry_after=2.5)
    async with connect(app, headers=AUTH) as client:
        throttled = await client.get("/echo")
    assert throttled.status_code == 429
    assert throttled.json() == {"message": "Too Many Attempts."}
    assert throttled.headers["x-ratelimit-limit"] == "10"
    assert throttled.headers["x-ratelimit-remaining"] == "0"
    assert throttled.headers["retry-after"] == "2.500"


@pytest.mark.parametrize(
    ("kind", "body", "content_type", "content"),
    [
        ("500", None, "application/json", b'{"message":"Server Error"}'),
        ("502", None, "text/html; charset=utf-8", b"<html><head><title>502 Bad Gateway"),
        ("503", None, "application/json", b'{"message":"Service Unavailable"}'),
        ("503", "upstream overloaded", "text/plain; charset=utf-8", b"upstream overloaded"),
        ("500", {"message": "Internal Error. Report ID: webapi-1"}, "application/json", b"{"),
    ],
)
async def test_server_errors_answer_with_their_status_and_body(
    connect: Connect, kind: str, body: object, content_type: str, content: bytes
) -> None:
    app = create_app(KEY)
    app.state.sandbox.faults.add(kind, body=body)  # type: ignore[arg-type]
    async with connect(app, headers=AUTH) as client:
        failed = await client.get("/echo")
    assert failed.status_code == int(kind)
    assert failed.headers["content-type"] == content_type
    assert failed.content.startswith(content)
    if isinstance(body, dict):
        assert failed.json() == body


@pytest.mark.serial
async def test_a_timeout_ends_in_a_read_timeout_and_the_next_request_is_answered(
    connect: Connect,
) -> None:
    app = create_app(KEY)
    sandbox = app.state.sandbox
    sandbox.faults.add("timeout", seconds=0.3)
    async with connect(app, headers=AUTH, timeout=0.2) as client:
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            await client.get("/echo")
        waited = time.monotonic() - started
        after = await client.get("/echo")
    assert 0.2 <= waited < 1.0
    assert after.status_code == 200
    assert [(e.fault, e.status) for e in sandbox.log] == [("timeout", None), (None, 200)]


async def test_a_reset_drops_the_connection_without_an_answer(connect: Connect) -> None:
    app = create_app(KEY)
    sandbox = app.state.sandbox
    sandbox.faults.add("reset")
    async with connect(app, headers=AUTH) as client:
        with pytest.raises(httpx.ReadError):
            await client.get("/echo")
        after = await client.get("/echo")
    assert after.status_code == 200
    assert [(e.fault, e.status) for e in sandbox.log] == [("reset", None), (None, 200)]


async def test_a_malformed_answer_is_cut_json_after_the_write_happened(connect: Connect) -> None:
    app = create_app(KEY)
    sandbox = app.state.sandbox
    sandbox.faults.add("malformed")
    async with connect(app, headers=AUTH) as client:
        garbled = await client.put("/items/k1", json={"email": "one@x.test"})
        again = await client.put("/items/k1", json={"email": "one@x.test"})
    assert garbled.status_code == 200
    assert garbled.content == b'{"id":"sc-k1","em'  # the first half of the body
    with pytest.raises(json.JSONDecodeError):
        garbled.json()
    assert sandbox.items == {"k1": {"id": "sc-k1", "email": "one@x.test"}}
    assert again.status_code == 200  # it exists already: the first PUT was applied


async def test_faults_wait_for_a_matching_method_and_path_and_skip_auth(
    connect: Connect,
) -> None:
    app = create_app(KEY, per_second=2)
    sandbox = app.state.sandbox
    sandbox.faults.add("503", times=2, method="PUT", path="/items")
    async with connect(app) as client:
        other = await client.get("/items", headers=AUTH)
        faulted = [await client.put("/items/k1", json={"email": "a@x.test"}) for _ in range(2)]
        passed = await client.put("/items/k1", json={"email": "a@x.test"}, headers=AUTH)
    assert other.status_code == 200
    # No key, no 401: the fault stands in front of auth, and it spends none of the 2/s.
    assert [r.status_code for r in faulted] == [503, 503]
    assert passed.status_code == 201
    assert len(sandbox.faults) == 0


def test_an_unknown_fault_kind_is_refused() -> None:
    app = create_app(KEY)
    with pytest.raises(ValueError, match="unknown fault kind 'teapot'"):
        app.state.sandbox.faults.add("teapot")
