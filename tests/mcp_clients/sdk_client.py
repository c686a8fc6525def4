#!/usr/bin/env python3
"""Drive Chantra's MCP role with the official Python MCP SDK (mcp 2.x).

Usage: python sdk_client.py http://127.0.0.1:PORT/mcp   (Streamable HTTP)
       python sdk_client.py http://127.0.0.1:PORT/sse   (legacy HTTP+SSE)

Lists the tools and checks their schemas and annotations, then walks the
whole channel life cycle (public and private channels, read grants, binary
payloads, every client-error path) over Streamable HTTP, asserting each
result. Exits 1 with a message naming the first failed step; prints one
summary line on success.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import sys
import time
import uuid
from typing import Any

from mcp import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from common import CheckFailed, check, reasons

EXPECTED_TOOLS = {
    "create_channel",
    "delete_channel",
    "publish_message",
    "create_read_grant",
    "revoke_read_grant",
    "get_channel",
    "read_channel_messages",
    "wait_for_messages",
}
READ_ONLY = {"get_channel", "read_channel_messages", "wait_for_messages"}
DESTRUCTIVE = {"delete_channel", "revoke_read_grant"}
IDEMPOTENT = {"get_channel", "read_channel_messages", "revoke_read_grant", "wait_for_messages"}

# Bytes that are not UTF-8 (0xff, 0xfe and a lone continuation byte 0x80).
BINARY = b"\xff\xfe\x00\x01chantra\x80\x7f"


class Runner:
    def __init__(self, session: ClientSession) -> None:
        self.session = session
        self.calls = 0
        self.checks = 0

    def ok(self, condition: Any, message: str) -> None:
        self.checks += 1
        check(condition, message)

    async def call(self, tool: str, args: dict[str, Any]) -> Any:
        self.calls += 1
        try:
            # After list_tools the SDK also validates structured content
            # against the tool's output schema (a RuntimeError if it does not conform).
            return await self.session.call_tool(tool, args)
        except Exception as err:  # protocol errors (MCPError), schema mismatches, transport
            raise CheckFailed(f"{tool}: call failed: {type(err).__name__}: {err}") from err

    async def success(self, tool: str, args: dict[str, Any]) -> dict[str, Any]:
        """Calls a tool that must succeed; returns its structured content."""
        result = await self.call(tool, args)
        text = result.content[0].text if result.content and hasattr(result.content[0], "text") else None
        self.ok(not result.is_error, f"{tool}: expected success, got isError with {text!r}")
        data = result.structured_content
        self.ok(isinstance(data, dict), f"{tool}: no structured content (got {data!r})")
        # Clients without structured-content support read the same JSON as text.
        self.ok(text is not None and json.loads(text) == data, f"{tool}: text content {text!r} differs from structured content")
        return data

    async def failure(self, tool: str, args: dict[str, Any], code: str) -> dict[str, Any]:
        """Calls a tool that must fail with a tool error carrying `code`."""
        result = await self.call(tool, args)
        self.ok(result.is_error, f"{tool}: expected isError with code {code}, got success {result.structured_content!r}")
        self.ok(result.content and result.content[0].type == "text", f"{tool}: error result has no text content")
        try:
            body = json.loads(result.content[0].text)
        except json.JSONDecodeError as err:
            raise CheckFailed(f"{tool}: error text is not JSON ({err}): {result.content[0].text!r}") from err
        error = body.get("error") if isinstance(body, dict) else None
        self.ok(isinstance(error, dict), f"{tool}: error JSON has no 'error' object: {body!r}")
        self.ok(error.get("code") == code, f"{tool}: expected error code {code}, got {error.get('code')!r} ({error.get('message')!r})")
        self.ok(isinstance(error.get("message"), str) and error["message"], f"{tool}: error {code} has no message")
        return error


async def check_tools(r: Runner) -> None:
    listed = await r.session.list_tools()
    tools = {t.name: t for t in listed.tools}
    r.ok(set(tools) == EXPECTED_TOOLS, f"tools/list: expected {sorted(EXPECTED_TOOLS)}, got {sorted(tools)}")
    for name, tool in tools.items():
        r.ok(tool.description, f"tools/list: {name} has no description")
        r.ok(isinstance(tool.input_schema, dict) and tool.input_schema.get("type") == "object", f"tools/list: {name} has no object input schema")
        r.ok(isinstance(tool.output_schema, dict) and tool.output_schema.get("type") == "object", f"tools/list: {name} has no object output schema")
        a = tool.annotations
        r.ok(a is not None, f"tools/list: {name} has no annotations")
        r.ok(bool(a.read_only_hint) == (name in READ_ONLY), f"tools/list: {name} readOnlyHint is {a.read_only_hint!r}")
        if name in DESTRUCTIVE:
            r.ok(a.destructive_hint is True, f"tools/list: {name} destructiveHint is {a.destructive_hint!r}, expected true")
        elif not a.read_only_hint:
            r.ok(a.destructive_hint is False, f"tools/list: {name} destructiveHint is {a.destructive_hint!r}, expected false")
        if name in IDEMPOTENT:
            r.ok(a.idempotent_hint is True, f"tools/list: {name} idempotentHint is {a.idempotent_hint!r}, expected true")
    # Schemas every client can fill: optional arguments as plain types, standard formats only.
    standard = {"date-time", "date", "time", "duration", "uuid", "uri", "email"}
    for name, tool in tools.items():
        stack = [tool.input_schema]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                r.ok(not isinstance(node.get("type"), list), f"tools/list: {name} has a type union {node.get('type')!r}")
                r.ok(node.get("format") in (None, *standard), f"tools/list: {name} has format {node.get('format')!r}")
                stack.extend(node.values())
            elif isinstance(node, list):
                stack.extend(node)
    props = tools["publish_message"].input_schema.get("properties", {})
    r.ok(props.get("ttl_seconds", {}).get("type") == "integer", f"tools/list: ttl_seconds is {props.get('ttl_seconds')!r}")
    for field in ("channel_id", "publish_token", "payload", "payload_base64", "ttl_seconds"):
        r.ok(field in props and props[field].get("description"), f"tools/list: publish_message.{field} is not documented")


async def scenario(r: Runner) -> None:
    # Public channel: create, publish text, read it back.
    public = await r.success("create_channel", {"visibility": "public"})
    r.ok(public.get("visibility") == "public", f"create_channel: visibility {public.get('visibility')!r}")
    r.ok(str(public.get("publish_token", "")).startswith("chp_"), "create_channel: no chp_ publish token")
    r.ok("read_token" not in public, "create_channel: a public channel got a read token")
    r.ok(str(public.get("url", "")).endswith(public["channel_id"]), f"create_channel: url {public.get('url')!r}")
    pub_id, pub_token = public["channel_id"], public["publish_token"]

    text = "hello from the Python MCP SDK ✓"
    sent = await r.success("publish_message", {"channel_id": pub_id, "publish_token": pub_token, "payload": text})
    r.ok(sent.get("channel_id") == pub_id, f"publish_message: channel_id {sent.get('channel_id')!r}")
    r.ok(sent.get("payload_size") == len(text.encode()), f"publish_message: payload_size {sent.get('payload_size')!r}")
    r.ok(sent.get("content_type", "").startswith("text/plain"), f"publish_message: content_type {sent.get('content_type')!r}")

    page = await r.success("read_channel_messages", {"channel_id": pub_id})
    msgs = page.get("messages")
    r.ok(isinstance(msgs, list) and len(msgs) == 1, f"read_channel_messages: expected 1 message, got {msgs!r}")
    r.ok(msgs[0].get("id") == sent["message_id"], f"read_channel_messages: id {msgs[0].get('id')!r} != {sent['message_id']}")
    r.ok(msgs[0].get("payload_text") == text, f"read_channel_messages: payload_text {msgs[0].get('payload_text')!r}")
    r.ok("payload_base64" not in msgs[0], f"read_channel_messages: text payload also sent as base64: {msgs[0]!r}")
    r.ok(page.get("truncated") is False, f"read_channel_messages: truncated {page.get('truncated')!r}")
    r.ok(page.get("next_cursor") == sent["message_id"], f"read_channel_messages: next_cursor {page.get('next_cursor')!r}")
    r.ok(page.get("has_more") is False, f"read_channel_messages: has_more {page.get('has_more')!r}")
    empty = await r.success("read_channel_messages", {"channel_id": pub_id, "after": page["next_cursor"]})
    r.ok(empty.get("messages") == [] and empty.get("next_cursor") == page["next_cursor"], f"read after cursor: {empty!r}")

    # Private channel: no token, a grant, revocation.
    private = await r.success("create_channel", {"visibility": "private"})
    r.ok(private.get("visibility") == "private", f"create_channel private: visibility {private.get('visibility')!r}")
    r.ok(str(private.get("read_token", "")).startswith("chr_"), "create_channel private: no chr_ read token")
    priv_id, priv_pub = private["channel_id"], private["publish_token"]
    await r.failure("read_channel_messages", {"channel_id": priv_id}, "missing_token")

    grant = await r.success("create_read_grant", {"channel_id": priv_id, "publish_token": priv_pub, "label": "sdk-client"})
    r.ok(str(grant.get("read_token", "")).startswith("chr_"), "create_read_grant: no chr_ read token")
    r.ok(grant.get("label") == "sdk-client", f"create_read_grant: label {grant.get('label')!r}")
    secret = "private note"
    psent = await r.success("publish_message", {"channel_id": priv_id, "publish_token": priv_pub, "payload": secret, "ttl_seconds": 600})
    ppage = await r.success("read_channel_messages", {"channel_id": priv_id, "read_token": grant["read_token"]})
    r.ok(len(ppage.get("messages", [])) == 1 and ppage["messages"][0].get("payload_text") == secret, f"read private with grant: {ppage!r}")
    r.ok(ppage.get("next_cursor") == psent["message_id"], f"read private: next_cursor {ppage.get('next_cursor')!r}")

    revoked = await r.success("revoke_read_grant", {"channel_id": priv_id, "publish_token": priv_pub, "grant_id": grant["grant_id"]})
    r.ok(revoked.get("grant_id") == grant["grant_id"] and revoked.get("state") == "revoked", f"revoke_read_grant: {revoked!r}")
    r.ok(revoked.get("revoked_at"), "revoke_read_grant: no revoked_at")
    await r.failure("read_channel_messages", {"channel_id": priv_id, "read_token": grant["read_token"]}, "grant_revoked")
    # The channel's first grant is untouched.
    still = await r.success("read_channel_messages", {"channel_id": priv_id, "read_token": private["read_token"]})
    r.ok(len(still.get("messages", [])) == 1, f"read private with the first grant: {still!r}")

    # Binary payload through payload_base64.
    encoded = base64.b64encode(BINARY).decode()
    bsent = await r.success("publish_message", {"channel_id": pub_id, "publish_token": pub_token, "payload_base64": encoded})
    r.ok(bsent.get("payload_size") == len(BINARY), f"publish binary: payload_size {bsent.get('payload_size')!r}")
    r.ok(bsent.get("content_type") == "application/octet-stream", f"publish binary: content_type {bsent.get('content_type')!r}")
    bpage = await r.success("read_channel_messages", {"channel_id": pub_id, "after": page["next_cursor"]})
    r.ok(len(bpage.get("messages", [])) == 1, f"read binary: expected 1 message, got {bpage!r}")
    bmsg = bpage["messages"][0]
    r.ok(bmsg.get("payload_base64") == encoded, f"read binary: payload_base64 {bmsg.get('payload_base64')!r} != {encoded!r}")
    r.ok("payload_text" not in bmsg, f"read binary: payload_text present for invalid UTF-8: {bmsg.get('payload_text')!r}")

    # Client errors come back as tool results with the REST API's codes.
    wrong = "chp_" + "A" * 43
    await r.failure("publish_message", {"channel_id": pub_id, "publish_token": wrong, "payload": "x"}, "invalid_token")
    await r.failure("get_channel", {"channel_id": pub_id, "publish_token": "not-a-token"}, "invalid_token")
    await r.failure("read_channel_messages", {"channel_id": priv_id, "read_token": "chr_" + "B" * 43}, "invalid_token")
    unknown = str(uuid.uuid4())
    await r.failure("read_channel_messages", {"channel_id": unknown}, "channel_not_found")
    await r.failure("get_channel", {"channel_id": unknown, "publish_token": pub_token}, "channel_not_found")
    await r.failure("publish_message", {"channel_id": pub_id, "publish_token": pub_token, "payload": "x", "ttl_seconds": 172801}, "invalid_ttl")
    await r.failure("publish_message", {"channel_id": pub_id, "publish_token": pub_token, "payload_base64": "not base64!"}, "invalid_payload")
    # Arguments that do not fit are tool errors naming the argument, not protocol errors.
    wrong = await r.failure("publish_message", {"channel_id": pub_id, "publish_token": pub_token, "payload": "x", "ttl_seconds": "60"}, "invalid_json")
    r.ok("ttl_seconds" in wrong["message"], f"argument error does not name ttl_seconds: {wrong['message']!r}")
    missing = await r.failure("read_channel_messages", {"channel_id": priv_id}, "missing_token")
    r.ok("pass read_token" in missing["message"] and "header" not in missing["message"], f"missing_token: {missing['message']!r}")

    # Metadata.
    info = await r.success("get_channel", {"channel_id": pub_id, "publish_token": pub_token})
    r.ok(info.get("channel_id") == pub_id and info.get("visibility") == "public", f"get_channel: {info!r}")
    r.ok(info.get("url") == public["url"], f"get_channel: url {info.get('url')!r}")
    r.ok(info.get("live_messages") == 2, f"get_channel: live_messages {info.get('live_messages')!r}, expected 2")
    r.ok(info.get("read_grants") == [], f"get_channel: read_grants {info.get('read_grants')!r}")
    r.ok(info.get("last_published_at") and info.get("idle_deletion_at") and info.get("created_at"), f"get_channel: missing timestamps in {info!r}")
    r.ok("publish_token" not in json.dumps(info) and pub_token not in json.dumps(info), "get_channel: leaks the publish token")
    pinfo = await r.success("get_channel", {"channel_id": priv_id, "publish_token": priv_pub})
    states = sorted(g.get("state") for g in pinfo.get("read_grants", []))
    r.ok(states == ["active", "revoked"], f"get_channel private: grant states {states!r}")
    r.ok(all("read_token" not in g for g in pinfo["read_grants"]), "get_channel private: a grant shows its token")

    # Delete, then the channel is gone.
    gone = await r.success("delete_channel", {"channel_id": pub_id, "publish_token": pub_token})
    r.ok(gone == {"channel_id": pub_id, "deleted": True}, f"delete_channel: {gone!r}")
    await r.failure("get_channel", {"channel_id": pub_id, "publish_token": pub_token}, "channel_not_found")
    await r.failure("read_channel_messages", {"channel_id": pub_id}, "channel_not_found")
    await r.success("delete_channel", {"channel_id": priv_id, "publish_token": priv_pub})


async def main(url: str) -> int:
    started = time.monotonic()
    failure: CheckFailed | None = None
    # A URL ending in /sse: the legacy HTTP+SSE transport (GET /sse + POST /messages).
    transport = sse_client(url) if url.rstrip("/").endswith("/sse") else streamable_http_client(url)
    async with transport as (read_stream, write_stream):
        async with ClientSession(read_stream, write_stream) as session:
            r = Runner(session)
            try:
                init = await session.initialize()
                r.ok(init.server_info.name == "chantra", f"initialize: server name {init.server_info.name!r}")
                r.ok(init.capabilities.tools is not None, "initialize: no tools capability")
                await check_tools(r)
                await scenario(r)
            except CheckFailed as err:
                # Leave the session cleanly (DELETE), then report.
                failure = err
            except Exception as err:  # initialize or tools/list failed
                failure = CheckFailed(f"{type(err).__name__}: {err}")
    if failure is not None:
        print(f"sdk_client: FAILED after {r.checks} checks: {failure}", file=sys.stderr)
        return 1
    elapsed = time.monotonic() - started
    print(
        f"sdk_client: OK, {r.checks} checks over {r.calls} tool calls "
        f"({'legacy HTTP+SSE' if url.rstrip('/').endswith('/sse') else 'Streamable HTTP'}, protocol {init.protocol_version}, server {init.server_info.name} {init.server_info.version}) in {elapsed:.1f}s"
    )
    return 0


class _TerminationWarnings(logging.Handler):
    """Records the SDK's "Session termination failed" warnings: the session
    DELETE must be answered 200/204 (rmcp alone says 202)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "Session termination failed" in record.getMessage():
            self.seen.append(record.getMessage())


TERMINATION = _TerminationWarnings()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: sdk_client.py http://HOST:PORT/mcp")
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(levelname)s: %(message)s")
    logging.getLogger("mcp.client.streamable_http").addHandler(TERMINATION)
    try:
        status = asyncio.run(main(sys.argv[1]))
        if TERMINATION.seen:
            print(f"sdk_client: FAILED: the session DELETE was refused: {TERMINATION.seen}", file=sys.stderr)
            status = 1
        sys.exit(status)
    except Exception as err:  # the transport itself failed (no server, broken stream)
        print(f"sdk_client: FAILED: {reasons(err)}", file=sys.stderr)
        sys.exit(1)
