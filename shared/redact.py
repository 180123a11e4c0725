"""Redaction of secrets in every text that can leave the process.

Secrets are registered once, when settings load them; from then on the log-record factory,
our exceptions and the Sentry `before_send` hook pass their text through `redact`. Registering
the values themselves (not just field names) catches a key wherever it turns up: a URL, an
error body echoing the request, a repr in a traceback.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"

# Query parameters whose values are credentials whatever their value (some APIs take keys in URLs).
_SENSITIVE_PARAM = re.compile(r"(key|token|secret|password|passwd|signature|auth|code)", re.I)
# Values shorter than this are not registered: masking "1" or "ab" would shred ordinary text.
_MIN_SECRET_LEN = 6

_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None


def register_secret(value: str | None) -> None:
    """Remember a secret value so that every later `redact` call masks it."""
    global _pattern
    if not value or len(value) < _MIN_SECRET_LEN:
        return
    with _lock:
        if value in _secrets:
            return
        _secrets.add(value)
        # Longest first, so a secret that contains another is masked whole.
        ordered = sorted(_secrets, key=len, reverse=True)
        _pattern = re.compile("|".join(re.escape(s) for s in ordered))


def registered_secrets() -> frozenset[str]:
    """The secret values registered so far (for tests and audits)."""
    with _lock:
        return frozenset(_secrets)


def redact(text: str) -> str:
    """Mask every registered secret in `text`."""
    pattern = _pattern
    if pattern is None or not text:
        return text
    return pattern.sub(MASK, text)


def redact_url(url: str) -> str:
    """Drop user-info, mask credential-like query parameters, then mask registered secrets."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    query = urlencode(
        [
            (name, MASK if _SENSITIVE_PARAM.search(name) else value)
            for name, value in parse_qsl(parts.query, keep_blank_values=True)
        ],
        safe="[]*",
    )
    return redact(urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment)))


def redact_data(value: Any) -> Any:
    """Redact strings anywhere inside nested dicts, lists and tuples (Sentry events, artifacts)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: redact_data(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_data(item) for item in value)
    return value


class _RedactingRecordFactory:
    """Wraps the log-record factory so every record, of every logger, is redacted at birth.

    A handler filter would miss handlers added later (Prefect adds its API handler per run);
    the record factory sees each record exactly once, before any handler formats it.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record: logging.LogRecord = self.inner(*args, **kwargs)
        if _pattern is not None:
            try:
                message = record.getMessage()
            except Exception:  # a malformed log call must not become a logging crash
                return record
            record.msg, record.args = redact(message), None
            if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
                record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
                record.exc_info = None
        return record


def install_log_redaction() -> None:
    """Install the redacting record factory once per process."""
    current = logging.getLogRecordFactory()
    if not isinstance(current, _RedactingRecordFactory):
        logging.setLogRecordFactory(_RedactingRecordFactory(current))
