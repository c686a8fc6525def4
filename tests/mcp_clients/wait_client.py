#!/usr/bin/env python3
"""An agent that listens, with the official Python MCP SDK (mcp 2.x).

Usage: python wait_client.py [--modern] MCP_URL REST_URL [LABEL]

--modern connects with the 2026-07-28 revision (`server/discover`, no
`initialize`); without it the SDK's handshake revision (2025-11-25).

MCP_URL is the mcp role's /mcp; REST_URL the rest role messages are
published through (another process, on PostgreSQL, for the cross-process
run). The agent loops on `wait_for_messages` with `after` = `next_cursor`
while a publisher thread sends 100 messages through REST at an uneven pace
(bursts, and pauses longer than a second so calls really wait). Checks:

- a first call without `after` returns only messages published from then on
  (one published before it is not returned) and times out empty;
- progress notifications arrive while a call waits (with a progressToken);
- every message arrives once, in order: none lost, none duplicated;
- each message reaches the agent within 1 s of its publish (REST 201);
- a last call times out empty (nothing left over, nothing repeated).

Exits 1 naming the first failed check; prints a summary line on success.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import statistics
import sys
import threading
import time
from typing import Any

from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from common import CheckFailed, check, reasons, rest

MESSAGES = 100
MAX_LATENCY = 1.0


class Publisher(threading.Thread):
    """Publishes m0..m99 through REST, recording when each 201 came back."""

    def __init__(self, rest_url: str, channel: dict[str, Any]) -> None:
        super().__init__(daemon=True)
        self.url = f"{rest_url}/v1/channels/{channel['channel_id']}/publish"
        self.token = channel["publish_token"]
        self.published: dict[str, float] = {}
        self.error: BaseException | None = None

    def publish(self, text: str) -> None:
        headers = {"x-publish-token": self.token, "content-type": "text/plain; charset=utf-8"}
        rest("POST", self.url, text.encode(), headers)

    def run(self) -> None:
        rng = random.Random(15)
        try:
            for i in range(MESSAGES):
                if i % 25 == 10:
                    time.sleep(1.5)  # the agent's call waits on the live feed
                else:
                    time.sleep(rng.uniform(0, 0.08))
                self.publish(f"m{i}")
                self.published[f"m{i}"] = time.monotonic()
        except BaseException as err:  # reported by the agent
            self.error = err


async def call(session: ClientSession, args: dict[str, Any], progress=None) -> dict[str, Any]:
    result = await session.call_tool("wait_for_messages", args, progress_callback=progress)
    text = result.content[0].text if result.content else ""
    check(not result.is_error, f"wait_for_messages {args}: tool error {text}")
    data = result.structured_content
    check(isinstance(data, dict) and isinstance(data.get("next_cursor"), str), f"wait_for_messages: {data!r}")
    return data


async def agent(mcp_url: str, rest_url: str, label: str, modern: bool) -> str:
    channel = rest("POST", f"{rest_url}/v1/channels", json.dumps({"visibility": "private"}).encode(),
                   {"content-type": "application/json"})
    base = {"channel_id": channel["channel_id"], "read_token": channel["read_token"]}
    publisher = Publisher(rest_url, channel)
    publisher.publish("before")

    async with streamable_http_client(mcp_url) as (read_stream, write_stream):
        async with ClientSession(read_stream, write_stream) as session:
            if modern:
                await session.discover()
            else:
                await session.initialize()

            # From now on only, with progress while waiting (SSE_KEEPALIVE_SECS apart).
            progress: list[float] = []

            async def on_progress(value: float, total: float | None, message: str | None) -> None:
                progress.append(value)

            first = await call(session, {**base, "timeout_seconds": 3}, on_progress)
            check(first["timed_out"] is True and first["messages"] == [],
                  f"a first call without `after` returned old messages: {first!r}")
            check(progress, "no progress notification while waiting 3 s")
            cursor = first["next_cursor"]

            publisher.start()
            received: list[str] = []
            arrived: dict[str, float] = {}
            calls = 0
            deadline = time.monotonic() + 90
            while len(received) < MESSAGES:
                check(time.monotonic() < deadline, f"only {len(received)} of {MESSAGES} messages within 90 s")
                check(publisher.error is None, f"publisher failed: {publisher.error!r}")
                result = await call(session, {**base, "after": cursor, "timeout_seconds": 10})
                now = time.monotonic()
                calls += 1
                check(result["timed_out"] is False or not result["messages"], f"timed out with messages: {result!r}")
                check(not result.get("gap") and not result["channel_deleted"] and not result.get("access_ended"),
                      f"unexpected end or gap: {result!r}")
                for message in result["messages"]:
                    text = message.get("payload_text")
                    check(text not in arrived, f"{text} arrived twice")
                    received.append(text)
                    arrived[text] = now
                if result["messages"]:
                    check(result["next_cursor"] == result["messages"][-1]["id"], "next_cursor is not the last message")
                cursor = result["next_cursor"]
            publisher.join(timeout=10)
            expected = [f"m{i}" for i in range(MESSAGES)]
            check(received == expected, f"messages lost, repeated or out of order: {received}")

            last = await call(session, {**base, "after": cursor, "timeout_seconds": 1})
            check(last["timed_out"] is True and last["messages"] == [], f"a message after the last: {last!r}")

    latencies = [max(0.0, arrived[t] - publisher.published[t]) for t in expected]
    worst = max(latencies)
    check(worst < MAX_LATENCY, f"a message took {worst:.3f} s from its publish to the agent (limit {MAX_LATENCY} s)")
    return (f"wait_client[{label}]: OK, {MESSAGES} messages in {calls} wait_for_messages calls, in order, once each; "
            f"publish → agent p50 {statistics.median(latencies) * 1000:.0f} ms, max {worst * 1000:.0f} ms; "
            f"{len(progress)} progress notifications")


def main() -> int:
    args = sys.argv[1:]
    modern = "--modern" in args
    args = [a for a in args if a != "--modern"]
    if len(args) not in (2, 3):
        sys.exit("usage: wait_client.py [--modern] MCP_URL REST_URL [LABEL]")
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(levelname)s: %(message)s")
    label = (args[2] if len(args) == 3 else "one process") + (", 2026-07-28" if modern else ", 2025-11-25")
    try:
        print(asyncio.run(agent(args[0], args[1].rstrip("/"), label, modern)))
        return 0
    except CheckFailed as err:
        print(f"wait_client[{label}]: FAILED: {err}", file=sys.stderr)
    except Exception as err:  # transport, SDK, or an exception group from the task group
        print(f"wait_client[{label}]: FAILED: {reasons(err)}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
