#!/usr/bin/env python3
"""Channels as MCP resources, with the official Python MCP SDK (mcp 2.x).

Usage: python resource_client.py [--modern] MCP_URL REST_URL [LABEL]

Without --modern the SDK's handshake revision (2025-11-25): the client lists
the resource template, reads a private channel's resource (read token in the
URI's query) and sees a message published before, then subscribes
(resources/subscribe) and, for each of 5 messages published through REST,
receives notifications/resources/updated within 1 s of the publish (REST
201) and reads the resource again to see that message; after
resources/unsubscribe a publish brings no notification.

With --modern the 2026-07-28 revision (server/discover): the same through a
`subscriptions/listen` stream (mcp.client.subscriptions.listen).

Exits 1 naming the first failed check; prints a summary line on success.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
import warnings
from typing import Any

from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from common import CheckFailed, check, rest

MESSAGES = 5
MAX_LATENCY = 1.0
TEMPLATE = "chantra://channels/{channel_id}"


async def publish(rest_url: str, channel: dict[str, Any], text: str) -> float:
    """Publishes through REST; returns when the 201 came back (monotonic)."""
    url = f"{rest_url}/v1/channels/{channel['channel_id']}/publish"
    headers = {"x-publish-token": channel["publish_token"], "content-type": "text/plain; charset=utf-8"}
    await asyncio.to_thread(rest, "POST", url, text.encode(), headers)
    return time.monotonic()


async def read_texts(session: ClientSession, uri: str) -> list[str]:
    result = await session.read_resource(uri)
    check(len(result.contents) == 1, f"resources/read: {result!r}")
    content = result.contents[0]
    check(str(content.uri) == uri, f"resources/read answered for {content.uri!r}, not {uri!r}")
    check(content.mime_type == "application/json", f"resources/read: mime type {content.mime_type!r}")
    body = json.loads(content.text)
    check(body.get("channel_id") and isinstance(body.get("messages"), list), f"resources/read body: {body!r}")
    return [m.get("payload_text") for m in body["messages"]]


async def run(mcp_url: str, rest_url: str, label: str, modern: bool) -> str:
    channel = rest("POST", f"{rest_url}/v1/channels", json.dumps({"visibility": "private"}).encode(),
                   {"content-type": "application/json"})
    uri = f"chantra://channels/{channel['channel_id']}?read_token={channel['read_token']}"
    await publish(rest_url, channel, "before")
    updates: asyncio.Queue[str] = asyncio.Queue()

    async def on_message(message: Any) -> None:
        if getattr(message, "method", None) == "notifications/resources/updated":
            updates.put_nowait(str(message.params.uri))

    latencies: list[float] = []
    async with streamable_http_client(mcp_url) as (read_stream, write_stream):
        async with ClientSession(read_stream, write_stream, message_handler=on_message) as session:
            if modern:
                await session.discover()
            else:
                await session.initialize()

            templates = await session.list_resource_templates()
            check([t.uri_template for t in templates.resource_templates] == [TEMPLATE],
                  f"resource templates: {templates.resource_templates!r}")
            check(await read_texts(session, uri) == ["before"], "resources/read misses the message published before")

            async def expect_update(next_update) -> None:
                for i in range(MESSAGES):
                    text = f"r{i}"
                    published = await publish(rest_url, channel, text)
                    try:
                        got = await asyncio.wait_for(next_update(), timeout=MAX_LATENCY + 1)
                    except asyncio.TimeoutError:
                        raise CheckFailed(f"no notifications/resources/updated for {text}") from None
                    latency = time.monotonic() - published
                    check(got == uri, f"notification for {got!r}, not {uri!r}")
                    check(latency <= MAX_LATENCY, f"{text}: notified {latency:.3f} s after its publish")
                    latencies.append(latency)
                    texts = await read_texts(session, uri)
                    check(texts and texts[-1] == text, f"after the notification the resource ends {texts[-3:]!r}")

            if modern:
                from mcp.client.subscriptions import listen

                async with listen(session, resource_subscriptions=[uri]) as subscription:
                    check(subscription.honored.resource_subscriptions == [uri],
                          f"listen honoured {subscription.honored!r}")
                    events = subscription.__aiter__()

                    async def next_event() -> str:
                        return str((await events.__anext__()).uri)

                    await expect_update(next_event)
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # resources/subscribe is deprecated in 2026-07-28 only
                    await session.subscribe_resource(uri)
                    await expect_update(updates.get)
                    await session.unsubscribe_resource(uri)
                await publish(rest_url, channel, "after unsubscribe")
                try:
                    late = await asyncio.wait_for(updates.get(), timeout=1.5)
                    raise CheckFailed(f"a notification after unsubscribe: {late!r}")
                except asyncio.TimeoutError:
                    pass

    revision = "2026-07-28 subscriptions/listen" if modern else "2025-11-25 resources/subscribe"
    worst = max(0.0, max(latencies))
    return f"resources ({label}, {revision}): {MESSAGES} notifications, each within {worst:.3f} s of its publish"


def main() -> int:
    args = sys.argv[1:]
    modern = "--modern" in args
    args = [a for a in args if a != "--modern"]
    if len(args) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING)
    label = args[2] if len(args) == 3 else "one process"
    try:
        print(asyncio.run(run(args[0], args[1].rstrip("/"), label, modern)))
    except CheckFailed as failed:
        print(f"resource_client: FAILED: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
