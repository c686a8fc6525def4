"""What the MCP client checks share: a failed check, REST calls for the
publishing side, and a readable reason for an exception group."""

from __future__ import annotations

import json
import urllib.request
from typing import Any


class CheckFailed(Exception):
    pass


def check(condition: Any, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def rest(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> dict[str, Any]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as response:
        check(response.status in (200, 201), f"{method} {url}: HTTP {response.status}")
        return json.loads(response.read())


def reasons(err: BaseException) -> str:
    """Every leaf of an exception (group), as `Type: message; …`: the SDK's
    task groups wrap a transport failure several levels deep."""
    leaves, stack = [], [err]
    while stack:
        e = stack.pop()
        if isinstance(e, BaseExceptionGroup):
            stack.extend(e.exceptions)
        else:
            leaves.append(e)
    return "; ".join(f"{type(e).__name__}: {e}" for e in leaves)
