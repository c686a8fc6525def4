#!/usr/bin/env python3
"""Drive Chantra's MCP role with the MCP Inspector CLI (@modelcontextprotocol/inspector --cli).

Usage: python inspector_client.py INSPECTOR_BIN MCP_BASE_URL

The Inspector validates tool arguments against each tool's JSON schema with
Ajv and turns `key=value` arguments into the schema's types, so nullable type
unions and non-standard formats (`uint64`) used to break integer arguments
(`ttl_seconds=60` arrived as the string "60"). Over Streamable HTTP (/mcp)
and the legacy HTTP+SSE transport (/sse, which the Inspector auto-selects for
that path), this lists the tools and calls create_channel, publish_message
with integer arguments, and wait_for_messages. Exits 1 naming the first
failed check.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import tempfile
from typing import Any

from common import CheckFailed, check


# The Inspector writes a catalog of servers it saw; keep it out of $HOME.
CATALOG = os.path.join(tempfile.gettempdir(), f"chantra-inspector-{os.getpid()}.json")


def inspector(binary: str, url: str, *args: str) -> dict[str, Any]:
    env = dict(os.environ, MCP_CATALOG_PATH=CATALOG)
    done = subprocess.run([binary, "--cli", url, *args], capture_output=True, text=True, timeout=60, env=env)
    check(done.returncode == 0, f"inspector {url} {' '.join(args)}: exit {done.returncode}: {done.stderr.strip()[-500:]}")
    # Ajv says so when a schema uses a format it does not know (schemars' "uint64", "int64").
    check("unknown format" not in done.stderr, f"inspector {' '.join(args)}: {done.stderr.strip()[:300]}")
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError as err:
        raise CheckFailed(f"inspector {' '.join(args)}: not JSON ({err}): {done.stdout[:300]!r}") from err


def call(binary: str, url: str, tool: str, **arguments: Any) -> dict[str, Any]:
    args = ["--method", "tools/call", "--tool-name", tool]
    if arguments:
        args += ["--tool-arg", *(f"{key}={value}" for key, value in arguments.items())]
    result = inspector(binary, url, *args)
    check(not result.get("isError"), f"{tool} {arguments}: tool error {result.get('content')}")
    data = result.get("structuredContent")
    check(isinstance(data, dict), f"{tool}: no structured content in {result!r}")
    return data


def scenario(binary: str, url: str) -> None:
    listed = inspector(binary, url, "--method", "tools/list")
    names = {tool["name"] for tool in listed.get("tools", [])}
    check({"publish_message", "wait_for_messages", "read_channel_messages"} <= names, f"tools/list at {url}: {sorted(names)}")
    channel = call(binary, url, "create_channel")
    published = call(binary, url, "publish_message", channel_id=channel["channel_id"],
                     publish_token=channel["publish_token"], payload="from the inspector", ttl_seconds=60)
    created = datetime.datetime.fromisoformat(published["created_at"].replace("Z", "+00:00"))
    expires = datetime.datetime.fromisoformat(published["expires_at"].replace("Z", "+00:00"))
    check(abs((expires - created).total_seconds() - 60) < 1, f"ttl_seconds=60 gave {created} → {expires}")
    page = call(binary, url, "read_channel_messages", channel_id=channel["channel_id"], limit=5, **{"from": "latest"})
    check([m.get("payload_text") for m in page["messages"]] == ["from the inspector"], f"read: {page!r}")
    waited = call(binary, url, "wait_for_messages", channel_id=channel["channel_id"], timeout_seconds=1, max_messages=5)
    check(waited["timed_out"] is True and waited["messages"] == [], f"wait from now on: {waited!r}")
    resumed = call(binary, url, "wait_for_messages", channel_id=channel["channel_id"], after=page["messages"][0]["id"],
                   timeout_seconds=1)
    check(resumed["timed_out"] is True, f"wait after the last: {resumed!r}")


def main() -> int:
    if len(sys.argv) != 3:
        sys.exit("usage: inspector_client.py INSPECTOR_BIN MCP_BASE_URL")
    binary, base = sys.argv[1], sys.argv[2].rstrip("/")
    try:
        for path in ("/mcp", "/sse"):
            scenario(binary, base + path)
    except (CheckFailed, subprocess.TimeoutExpired) as err:
        print(f"inspector_client: FAILED: {err}", file=sys.stderr)
        return 1
    finally:
        if os.path.exists(CATALOG):
            os.remove(CATALOG)
    print("inspector_client: OK, tools listed and called with integer arguments over /mcp and /sse")
    return 0


if __name__ == "__main__":
    sys.exit(main())
