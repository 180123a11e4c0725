"""The one HTTP client every provider uses: auth, limits, retries, typed errors, redaction.

Policy (STYLE.md, after dlt's retry helper): 429, 5xx, transport errors and unparseable JSON are
retried with tenacity, waiting the response's Retry-After (seconds or HTTP date) when given, else
capped exponential backoff with full jitter. Any other 4xx fails at once with `ProviderHTTPError`
carrying status, method, redacted URL and the provider's own message. Every attempt passes the
limiter and is counted for the run ledger. Waits go through an injectable `sleep`, so tests
never sleep. This is the only module that imports httpx and tenacity.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import random
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt

from shared.limits import Limiter, LimitSpec, shared_limiter
from shared.names import global_limit_name
from shared.observability import get_logger
from shared.redact import redact, redact_data, redact_url, register_secret
from shared.settings import ProviderSettings, Settings

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
# Transport errors raised before the request reached the server: safe to repeat any request.
NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Headers whose values are credentials, whatever the provider calls them.
CREDENTIAL_HEADER = re.compile(r"(auth|key|token|secret|session|cookie)", re.I)
MAX_RETRY_AFTER_SECONDS = 600.0
MESSAGE_LIMIT = 1000

Sleep = Callable[[float], Awaitable[None]]


class ProviderError(Exception):
    """A provider request failed; every field is safe to log (secrets redacted)."""

    def __init__(
        self,
        provider: str,
        method: str,
        url: str,
        message: str,
        *,
        status: int | None = None,
        body: Any = None,
    ) -> None:
        self.provider = provider
        self.method = method
        self.url = redact_url(url)
        self.status = status
        # Redact first, truncate last: a cut through a key would leave part of it unmasked.
        self.message = redact(message)[:MESSAGE_LIMIT]
        body = redact_data(body)
        self.body = body[:MESSAGE_LIMIT] if isinstance(body, str) else body
        status_text = f" → {status}" if status is not None else ""
        super().__init__(f"{provider} {method} {self.url}{status_text}: {self.message}")


class ProviderHTTPError(ProviderError):
    """A 4xx the provider will answer the same way again: not retried; a per-record failure."""


class RetriesExhausted(ProviderError):
    """Every attempt met a retryable failure (429, 5xx, transport error, malformed JSON)."""


class _Retryable(Exception):
    """One failed attempt worth another try."""

    def __init__(self, error: ProviderError, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


def parse_retry_after(response: httpx.Response) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if not math.isfinite(seconds):  # "nan" parses as a float, and sleep(nan) never returns
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def response_date(response: httpx.Response) -> datetime | None:
    """The provider's clock when it answered (`Date`, RFC 9110 §6.6.1), aware UTC; None when
    absent or unreadable. Incremental reads start from it, never from our own clock."""
    text = response.headers.get("date")
    if not text:
        return None
    try:
        return parsedate_to_datetime(text).astimezone(UTC)
    except (TypeError, ValueError):
        return None


def provider_message(response: httpx.Response) -> str:
    """The provider's own error text: the usual JSON fields, else the body, else the reason."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip() or response.reason_phrase
    return body_message(body)


@dataclass(frozen=True)
class Answer:
    """A provider's answer to one write, refusals included: its status and decoded body."""

    code: int
    body: Any

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300

    @property
    def message(self) -> str:
        """The provider's own words (for a refusal's `sync_failure`)."""
        return body_message(self.body)


def body_message(body: Any) -> str:
    """The provider's own error text in a decoded body (a response's, or a batch item's)."""
    parts: list[str] = []
    if isinstance(body, dict):
        for key in ("message", "title", "detail", "error", "error_description"):
            if isinstance(body.get(key), str) and body[key] not in parts:
                parts.append(_fill(body[key], body.get("parameters")))
        errors = body.get("errors")
        if errors:
            parts.append(json.dumps(errors, ensure_ascii=False, default=str))
    elif isinstance(body, str):
        parts.append(body)
    return "; ".join(parts) or json.dumps(body, ensure_ascii=False)


def _fill(message: str, parameters: Any) -> str:
    """Magento-style placeholders (`%resources`, `%1`) filled from `parameters`, an object or
    a list (pull §2.10); a message without them is returned as it is."""
    if isinstance(parameters, list):
        named = {str(i + 1): value for i, value in enumerate(parameters)}
    elif isinstance(parameters, dict):
        named = {str(key): value for key, value in parameters.items()}
    else:
        return message

    def fill(found: re.Match[str]) -> str:
        value = named.get(found.group(1))
        return found.group(0) if value is None else str(value)

    return re.sub(r"%(\w+)", fill, message)


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


@dataclass
class RetryPolicy:
    """How failed attempts are retried; `sleep` is injected by tests."""

    max_attempts: int = 6
    backoff_base: float = 0.5
    backoff_max: float = 60.0
    retry_statuses: frozenset[int] = RETRY_STATUSES
    sleep: Sleep = asyncio.sleep
    retry_after: Callable[[httpx.Response], float | None] = parse_retry_after
    jitter: Callable[[float], float] = field(default=lambda cap: random.uniform(0, cap))

    def wait(self, state: RetryCallState) -> float:
        """Retry-After when the provider gave one, else capped exponential backoff, full jitter."""
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, _Retryable) and error.retry_after is not None:
            return error.retry_after
        cap = min(self.backoff_max, self.backoff_base * 2 ** (state.attempt_number - 1))
        return self.jitter(cap)


class HttpClient:
    """One provider's `httpx.AsyncClient` for one run, wrapped in limits and retries."""

    def __init__(
        self,
        provider: str,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        auth: httpx.Auth | tuple[str, str] | None = None,
        limiter: Limiter | None = None,
        policy: RetryPolicy | None = None,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        error_message: Callable[[httpx.Response], str] = provider_message,
    ) -> None:
        self.provider = provider
        self.limiter = limiter or Limiter(LimitSpec(name=provider))
        self.limiter.attach()
        self.policy = policy or RetryPolicy()
        _register_credentials(headers, auth)
        self.error_message = error_message
        self.requests = 0
        max_connections = self.limiter.spec.max_in_flight or 100
        self._client = httpx.AsyncClient(
            base_url=base_url,
            headers={"Accept": "application/json", **(headers or {})},
            auth=auth,
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            transport=transport,
            follow_redirects=False,
        )

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close connections; the limiter's last client gives back its shared-limit window."""
        await self._client.aclose()
        await self.limiter.detach()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        data: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        parse_json: bool = False,
        idempotent: bool | None = None,
        lanes: Sequence[Limiter] = (),
    ) -> httpx.Response:
        """Send with limits and retries; return the successful response.

        `idempotent` defaults to the method's HTTP meaning (POST and PATCH are not). A request
        that is not idempotent is retried only when it cannot have been applied: a 429, or a
        connection that never opened. A 5xx or a lost response then raises `ProviderError`, so
        a push never creates a record twice; provider upserts pass `idempotent=True`.

        `lanes` are caps this request counts against besides the account's (MailerLite's 5
        imports a minute): each attempt takes a slot of each, then the account's next free
        start, ahead of the requests queued for one. The lanes' next slots are booked from the
        moment the bytes leave, so the wait for the account cannot bunch two lane requests on
        the wire. A 429 slows all of them.

        Raises:
            ProviderHTTPError: a non-retryable 4xx, with the provider's message.
            RetriesExhausted: the last of `max_attempts` failed retryably.
            ProviderError: a non-idempotent request failed in a way that is unsafe to repeat.
        """
        safe = method.upper() in IDEMPOTENT_METHODS if idempotent is None else idempotent
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.policy.max_attempts),
            wait=self.policy.wait,
            retry=retry_if_exception_type(_Retryable),
            sleep=self.policy.sleep,
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._attempt(
                        method, path, params, json_body, data, headers, parse_json, safe, lanes
                    )
        except _Retryable as exhausted:
            error = exhausted.error
            raise RetriesExhausted(
                error.provider,
                error.method,
                error.url,
                f"gave up after {self.policy.max_attempts} attempts: {error.message}",
                status=error.status,
                body=error.body,
            ) from None
        raise AssertionError("unreachable: tenacity either returns or raises")

    async def download(self, url: str) -> bytes:
        """GET an absolute URL that needs no credentials (a result file on a CDN, Mailchimp's
        batch results): sent without this client's headers and auth, because credentials
        must never reach another host. Not paced: it is not the provider's API."""
        self.requests += 1
        async with httpx.AsyncClient(timeout=self._client.timeout, follow_redirects=True) as bare:
            try:
                response = await bare.get(url)
            except httpx.TransportError as exc:
                message = f"{type(exc).__name__}: {exc}"
                raise ProviderError(self.provider, "GET", url, message) from None
        if response.status_code >= 400:
            raise self._error(ProviderError, "GET", url, response)
        return response.content

    async def get_json(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """GET and decode JSON (a malformed body counts as a retryable failure)."""
        response = await self.request("GET", path, params=params, parse_json=True)
        return response.json()

    async def _attempt(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        json_body: Any,
        data: Mapping[str, Any] | None,
        headers: Mapping[str, str] | None,
        parse_json: bool,
        safe: bool,
        lanes: Sequence[Limiter],
    ) -> httpx.Response:
        url = str(self._client.build_request(method, path, params=params).url)
        async with AsyncExitStack() as held:
            starts = [await held.enter_async_context(lane.slot()) for lane in lanes]
            start = await held.enter_async_context(self.limiter.slot(first=bool(lanes)))
            starts.append(start)

            async def trace(event: str, info: Mapping[str, Any]) -> None:
                for each in starts:
                    await each.trace(event, info)

            self.requests += 1
            try:
                response = await self._client.request(
                    method,
                    path,
                    params=params,
                    json=json_body,
                    data=data,
                    headers=headers,
                    extensions={"trace": trace},
                )
            except httpx.TransportError as exc:
                error = ProviderError(self.provider, method, url, f"{type(exc).__name__}: {exc}")
                if safe or isinstance(exc, NEVER_SENT):
                    raise _Retryable(error) from None
                raise error from None
        status = response.status_code
        if status in self.policy.retry_statuses:
            retry_after = self.policy.retry_after(response)
            if status == 429:
                for each in starts:
                    each.limiter.throttled(retry_after, each.at)
            error = self._error(ProviderError, method, url, response)
            if safe or status == 429:
                raise _Retryable(error, retry_after)
            raise error
        if status >= 400:
            raise self._error(ProviderHTTPError, method, url, response)
        for each in starts:
            each.limiter.succeeded()
        if parse_json:
            try:
                response.json()
            except ValueError:
                error = ProviderError(
                    self.provider,
                    method,
                    url,
                    f"malformed JSON in {status} response",
                    status=status,
                )
                if not safe:  # it was applied; only the answer was garbled
                    raise error from None
                raise _Retryable(error) from None
        return response

    def _error(
        self, kind: type[ProviderError], method: str, url: str, response: httpx.Response
    ) -> ProviderError:
        return kind(
            self.provider,
            method,
            url,
            self.error_message(response),
            status=response.status_code,
            body=_body(response),
        )

    def _log_retry(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        get_logger("syncflows.http").warning(
            "%s; retrying in %.1f s (attempt %d of %d)",
            error.error if isinstance(error, _Retryable) else error,
            wait,
            state.attempt_number + 1,
            self.policy.max_attempts,
        )


def _register_credentials(
    headers: Mapping[str, str] | None, auth: httpx.Auth | tuple[str, str] | None
) -> None:
    """Register every credential a client sends, including runtime tokens (OAuth)."""
    for name, value in (headers or {}).items():
        if CREDENTIAL_HEADER.search(name):
            register_secret(value)
            register_secret(value.split()[-1] if value.split() else value)  # "Bearer <token>"
    if isinstance(auth, tuple):
        user, password = auth
        register_secret(password)
        register_secret(base64.b64encode(f"{user}:{password}".encode()).decode())


def provider_client(
    provider: ProviderSettings,
    settings: Settings,
    *,
    headers: Mapping[str, str] | None = None,
    auth: httpx.Auth | tuple[str, str] | None = None,
    base_url: str | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    policy: RetryPolicy | None = None,
    error_message: Callable[[httpx.Response], str] = provider_message,
) -> HttpClient:
    """The run's client for one provider account, with its shared limiter and retry policy."""
    spec = LimitSpec(
        name=global_limit_name(provider.provider, provider.account),
        rate_per_second=provider.rate_per_second,
        max_in_flight=provider.max_in_flight,
    )
    limiter = shared_limiter(
        spec,
        coordinate=settings.coordinate_limits,
        lease_seconds=settings.lease_seconds,
        margin=provider.rate_margin,
    )
    return HttpClient(
        provider.provider,
        base_url or provider.base_url,
        headers=headers,
        auth=auth,
        limiter=limiter,
        policy=policy
        or RetryPolicy(
            max_attempts=settings.http_max_attempts, backoff_max=settings.http_backoff_max_seconds
        ),
        timeout=settings.http_timeout_seconds,
        transport=transport,
        error_message=error_message,
    )
