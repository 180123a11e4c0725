"""Mailchimp OAuth 2 for `syncflows mailchimp connect`: authorize, swap the code, read the account.

The authorization-code flow of push §3.1: the user approves the app at
`<login>/oauth2/authorize`, Mailchimp redirects the browser to `MAILCHIMP_REDIRECT_URI` with
`code` and `state`, and a form POST to `<login>/oauth2/token` swaps the code for a token that
never expires (`expires_in: 0`, no refresh token). `GET <login>/oauth2/metadata` then names the
token's data centre (`dc`), `api_endpoint` and account; it answers a bad token with 200 and
`{"error": "invalid_token"}`, so the body is checked, not the status.

For a terminal, `CallbackListener` serves the redirect URI itself when it points at this
machine (`http://127.0.0.1:<port>/callback`), so the code arrives without copy and paste.
Requests go through the shared `HttpClient`, so the client secret, the code and the token are
redacted wherever they might be echoed.
"""

from __future__ import annotations

import html
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlencode, urlsplit

from shared.http import HttpClient, ProviderError, provider_client
from shared.redact import register_secret
from shared.settings import (
    GlobalLimits,
    MailchimpSettings,
    Settings,
    load_provider_settings,
)

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost"})
DONE_PAGE = "Connected to Mailchimp. You can close this tab and return to the terminal."


class OAuthError(RuntimeError):
    """Mailchimp's login host refused a step; the message is safe to show (no secret in it)."""


class _OAuthSettings(MailchimpSettings):
    """MailchimpSettings whose required variables include the OAuth app's (for `connect`)."""

    required: ClassVar[tuple[str, ...]] = (
        *MailchimpSettings.required,
        *MailchimpSettings.oauth_required,
    )


async def load_oauth_settings() -> MailchimpSettings:
    """Mailchimp settings with the OAuth app's credentials and the token keys.

    Raises:
        MissingConfiguration: naming every missing variable, before any request.
    """
    return await load_provider_settings(_OAuthSettings)


@dataclass(frozen=True)
class Metadata:
    """What `/oauth2/metadata` says of a token's account (push §3.1)."""

    dc: str
    api_endpoint: str  # the API host, without /3.0
    account_id: str
    account_name: str | None


def authorize_url(provider: MailchimpSettings, state: str) -> str:
    """Where the user approves the app (push §3.1); `state` ties the redirect to this attempt."""
    query = urlencode(
        {
            "response_type": "code",
            "client_id": provider.client_id or "",
            "redirect_uri": provider.redirect_uri or "",
            "state": state,
        }
    )
    return f"{provider.login_url.rstrip('/')}/oauth2/authorize?{query}"


def login_client(provider: MailchimpSettings, settings: Settings) -> HttpClient:
    """A client for the login host. Its requests are few and not the account's API calls, so
    they are never coordinated through Prefect's global limits."""
    local = settings.model_copy(update={"global_limits": GlobalLimits.OFF})
    login = provider.model_copy(update={"account": "login"})
    return provider_client(login, local, base_url=provider.login_url.rstrip("/"))


async def exchange_code(provider: MailchimpSettings, settings: Settings, code: str) -> str:
    """Swap an authorization code for an access token (push §3.1: a form POST).

    Raises:
        OAuthError: with Mailchimp's `error` (e.g. `invalid_grant`), never the code or secret.
    """
    register_secret(code)  # an unspent code is as good as a token
    secret = provider.client_secret.get_secret_value() if provider.client_secret else ""
    form = {
        "grant_type": "authorization_code",
        "client_id": provider.client_id or "",
        "client_secret": secret,
        "redirect_uri": provider.redirect_uri or "",
        "code": code,
    }
    async with login_client(provider, settings) as client:
        try:
            response = await client.request("POST", "oauth2/token", data=form, parse_json=True)
        except ProviderError as error:
            raise _refusal("Mailchimp refused the authorization code", error) from None
    body = response.json()
    token = body.get("access_token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token:
        raise OAuthError("Mailchimp's token answer carries no access_token")
    register_secret(token)
    return token


async def read_metadata(provider: MailchimpSettings, settings: Settings, token: str) -> Metadata:
    """The token's account: data centre, API endpoint, id and name (push §3.1).

    Raises:
        OAuthError: the token is invalid (a 200 with `error`), or the answer lacks the fields.
    """
    register_secret(token)
    headers = {"Authorization": f"OAuth {token}"}  # push §3.1: the metadata call's scheme
    async with login_client(provider, settings) as client:
        try:
            response = await client.request(
                "GET", "oauth2/metadata", headers=headers, parse_json=True
            )
        except ProviderError as error:
            raise _refusal("Mailchimp did not describe the account", error) from None
    return _metadata(response.json())


def _metadata(body: Any) -> Metadata:
    if not isinstance(body, dict):
        raise OAuthError("Mailchimp's metadata answer is not an object")
    if body.get("error"):  # push §3.1: a bad token is a 200 with an error
        raise OAuthError(f"Mailchimp refused the access token: {body['error']}")
    dc, endpoint, account = body.get("dc"), body.get("api_endpoint"), body.get("account_id")
    if not (dc and endpoint and account):
        raise OAuthError("Mailchimp's metadata answer lacks dc, api_endpoint or account_id")
    name = body.get("accountname")
    return Metadata(
        dc=str(dc),
        api_endpoint=str(endpoint).rstrip("/").removesuffix("/3.0"),
        account_id=str(account),
        account_name=str(name) if name else None,
    )


def _refusal(what: str, error: ProviderError) -> OAuthError:
    """A failed login-host request as one line: RFC 6749 §5.2's `error` (and description)
    when the body has one; a host that never answered is said to be unreachable."""
    if error.status is None or error.status >= 500:
        return OAuthError(f"cannot reach Mailchimp's login host: {error}")
    body = error.body
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        described = body.get("error_description")
        reason = f"{body['error']} ({described})" if isinstance(described, str) else body["error"]
        return OAuthError(f"{what}: {reason}")
    return OAuthError(f"{what}: {error.message}")


# ---- the loopback redirect ----------------------------------------------------------------------


def is_loopback(redirect_uri: str) -> bool:
    """Whether this machine can serve `redirect_uri` itself (http on 127.0.0.1 or localhost)."""
    parts = urlsplit(redirect_uri)
    return parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS


def loopback_address(redirect_uri: str) -> tuple[str, int, str]:
    """Host, port and path to listen on for `redirect_uri`.

    Raises:
        OAuthError: the redirect URI is not on this machine (the web app's own callback, say).
    """
    if not is_loopback(redirect_uri):
        raise OAuthError(
            f"MAILCHIMP_REDIRECT_URI ({redirect_uri}) is not an http://127.0.0.1 or "
            "http://localhost address to listen on: pass the code Mailchimp sent to it (--code)"
        )
    parts = urlsplit(redirect_uri)
    return "127.0.0.1", parts.port or 80, parts.path or "/"


class _CallbackHandler(BaseHTTPRequestHandler):
    """Answers the browser's redirect; the server carries the expected path, state and outcome."""

    server: _CallbackServer
    timeout = 10  # a browser's idle pre-opened connection must not hold a thread for long

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path != self.server.expected_path:
            self._answer(404, "Not the Mailchimp callback.")
            return
        query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
        if query.get("state") != self.server.state:  # not this attempt's: keep waiting
            self._answer(400, "This answer belongs to another connect attempt; ignored.")
        elif query.get("error"):
            self._answer(400, f"Mailchimp did not connect: {query['error']}.")
            self.server.finish(error=query["error"])
        elif query.get("code"):
            register_secret(query["code"])
            self._answer(200, DONE_PAGE)
            self.server.finish(code=query["code"])
        else:
            self._answer(400, "The answer carries no code.")

    def _answer(self, status: int, text: str) -> None:
        page = (
            "<!doctype html><meta charset=utf-8><title>syncflows · Mailchimp</title>"
            f"<p>{html.escape(text)}</p>"
        ).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the request line carries the code."""


class _CallbackServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], path: str, state: str) -> None:
        super().__init__(address, _CallbackHandler)
        self.expected_path, self.state = path, state
        self.code: str | None = None
        self.error: str | None = None
        self.done = threading.Event()
        self._lock = threading.Lock()

    def finish(self, *, code: str | None = None, error: str | None = None) -> None:
        """The first answer with the right state wins; later ones change nothing."""
        with self._lock:
            if not self.done.is_set():
                self.code, self.error = code, error
                self.done.set()


class CallbackListener:
    """Serves the loopback redirect URI from a thread. It listens from construction, so a quick
    browser is queued, not refused, while the authorize URL is still being shown."""

    def __init__(self, redirect_uri: str, state: str) -> None:
        host, port, path = loopback_address(redirect_uri)
        try:
            self._server = _CallbackServer((host, port), path, state)
        except OSError as error:
            raise OAuthError(
                f"cannot listen on {host}:{port} for MAILCHIMP_REDIRECT_URI: {error.strerror}"
            ) from None
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def __enter__(self) -> CallbackListener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def wait(self, timeout: float) -> str:
        """The code of the first redirect whose `state` matches.

        Raises:
            OAuthError: Mailchimp answered with `error` (the user declined), or nothing came
                within `timeout` seconds.
        """
        if not self._server.done.wait(timeout):
            raise OAuthError(
                f"no answer from Mailchimp within {timeout:.0f} s: run the command again "
                "(or pass --code)"
            )
        if self._server.error is not None:
            raise OAuthError(f"Mailchimp did not connect: {self._server.error}")
        assert self._server.code is not None
        return self._server.code


def wait_for_code(redirect_uri: str, state: str, timeout: float) -> str:
    """Listen on the loopback `redirect_uri` until Mailchimp's redirect brings the code."""
    with CallbackListener(redirect_uri, state) as listener:
        return listener.wait(timeout)
