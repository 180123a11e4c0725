"""What a sandbox received, for assertions: one entry per request, in arrival order."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from starlette.datastructures import Headers


@dataclass(slots=True, eq=False)
class LogEntry:
    """One request as it arrived, and how it ended.

    `at` is real wall-clock time (`time.time()`) at arrival; `concurrency` counts the requests
    in flight at that moment, this one included; `status` is the status sent (None when the
    connection was dropped or timed out); `fault` names the fault it took. Query, body and
    headers are kept raw and parsed on access, so logging costs little per request.
    """

    method: str
    path: str
    query_string: str
    at: float
    raw_headers: list[tuple[bytes, bytes]] = field(repr=False)
    raw_body: bytes = field(default=b"", repr=False)
    concurrency: int = 0
    status: int | None = None
    fault: str | None = None

    @property
    def query(self) -> dict[str, str]:
        """Query parameters; a repeated name keeps its last value (see `query_string` for all)."""
        return dict(parse_qsl(self.query_string, keep_blank_values=True))

    @property
    def body(self) -> Any:
        """The body as parsed JSON, else as text; None when empty."""
        if not self.raw_body:
            return None
        try:
            return json.loads(self.raw_body)
        except ValueError:
            return self.raw_body.decode("utf-8", errors="replace")

    @property
    def headers(self) -> Headers:
        """Request headers, case-insensitive."""
        return Headers(raw=self.raw_headers)
