"""Test seams for unit tests without sockets: a scripted urllib3 pool and fixed credentials.

Like httpx's ``MockTransport``: the client under test keeps all of its own logic; only the network
is replaced, at urllib3's boundary (``PoolManager.request`` returning a real ``HTTPResponse``).
"""

from __future__ import annotations

import io
import json
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import urllib3
from urllib3.exceptions import HTTPError

from thread_updater.credentials import PortkeyCredentials, RoutingMode

Answer = tuple[int, Any, Mapping[str, str]] | HTTPError


@dataclass
class FakePool:
    """Answers each request with the next scripted answer for its URL (or ``default``): a
    ``(status, json_body, headers)`` triple, or an urllib3 error to raise as the network would."""

    script: dict[str, deque[Answer]] = field(default_factory=dict)
    default: Answer = (200, {"id": "thread", "object": "thread"}, {})
    requests: list[dict[str, Any]] = field(default_factory=list)
    on_request: Callable[[str], None] | None = None

    def answer(self, url_suffix: str, *answers: Answer) -> None:
        self.script.setdefault(url_suffix, deque()).extend(answers)

    def request(self, method: str, url: str, *, body: bytes, headers: Mapping[str, str], **_: Any) -> Any:
        self.requests.append(
            {"method": method, "url": url, "json": json.loads(body), "headers": dict(headers)}
        )
        if self.on_request is not None:
            self.on_request(url)
        queued = next(
            (queue for suffix, queue in self.script.items() if url.endswith(suffix) and queue), None
        )
        answer = queued.popleft() if queued else self.default
        if isinstance(answer, HTTPError):
            raise answer
        status, document, answer_headers = answer
        data = json.dumps(document).encode()
        return urllib3.HTTPResponse(
            body=io.BytesIO(data), status=status, headers=dict(answer_headers), preload_content=False
        )


@dataclass
class FixedCredentials:
    """A credential source that never changes; ``refreshes`` counts the client's refresh requests,
    ``accepted_once`` says whether Portkey accepted them for some request (a 2xx)."""

    headers: Mapping[str, str] = field(default_factory=lambda: {"x-portkey-api-key": "unit-test-key"})
    refreshes: int = 0
    accepted_once: bool = False

    def current(self, deadline: float = 0.0) -> tuple[int, PortkeyCredentials]:
        return 1, PortkeyCredentials(mode=RoutingMode.VIRTUAL_KEY, headers=self.headers)

    def refresh(self, seen_generation: int, deadline: float = 0.0) -> tuple[int, PortkeyCredentials]:
        self.refreshes += 1
        return self.current(deadline)

    def confirm(self, credentials: PortkeyCredentials) -> None:
        self.accepted_once = True

    def accepted(self, credentials: PortkeyCredentials) -> bool:
        return self.accepted_once
