"""Interop check: the official MCP Python SDK drives `mqtt-mcp serve` over stdio.

Run by tests/interop_python.rs inside a venv holding the pinned packages of
tests/interop/requirements.txt:

    python python_client.py /path/to/mqtt-mcp /path/to/schema-dir

It starts the server with the SDK's own stdio transport (`stdio_client`) and a
`ClientSession`, then checks, in order:

1. `server/discover` at 2026-07-28 (the newer-client probe) is answered at
   once with a DiscoverResult naming 2026-07-28 and 2025-11-25 (the server
   serves both eras); the session then takes the handshake path;
2. `initialize` negotiates 2025-11-25 and the server announces tools;
3. `tools/list` serves exactly the tools of schema/, each inputSchema and
   outputSchema a valid JSON Schema draft 2020-12 (and the input schemas are
   the files' verbatim);
4. `publish_message` (retained, QoS 1) is acknowledged;
5. `subscribe_and_collect` receives that retained message (flagged retain),
   and in a second call a live one published while it runs, payloads intact;
   the SDK validates each structuredContent against its outputSchema, and so
   does this script;
6. invalid calls (a wildcard topic, a schema violation) come back as results
   with isError true and say what is wrong; an unknown tool is a JSON-RPC
   -32602 error;
7. leaving the session closes stdin and the server exits 0 on its own,
   before the SDK would resort to SIGTERM (2 s).

Exits 0 when all hold; otherwise prints what failed and exits 1.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import traceback
import uuid
from pathlib import Path
from typing import Any

import anyio
from jsonschema import Draft202012Validator
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.shared.exceptions import MCPError


class CheckFailed(Exception):
    """A check of this script did not hold."""


def check(cond: bool, what: str) -> None:
    if not cond:
        raise CheckFailed(what)
    print(f"ok   {what}", flush=True)


def structured(result: Any) -> dict[str, Any]:
    """The structuredContent of a successful call, cross-checked with its text block."""
    if result.is_error:
        raise CheckFailed(f"tool call failed: {texts(result)}")
    sc = result.structured_content
    if not isinstance(sc, dict):
        raise CheckFailed(f"structuredContent is not an object: {sc!r}")
    # MCP: a tool returning structured content SHOULD also return it as text.
    as_text = [json.loads(t) for t in texts(result) if t.startswith("{")]
    if sc not in as_text:
        raise CheckFailed(f"no text block carries the structuredContent: {texts(result)}")
    return sc


def texts(result: Any) -> list[str]:
    return [c.text for c in result.content if getattr(c, "type", None) == "text"]


async def run(binary: str, schema_dir: Path, status_file: Path) -> None:
    # A shell in between records the server's own exit status: the SDK keeps
    # its process handle to itself.
    params = StdioServerParameters(
        command="/bin/sh",
        args=[
            "-c",
            '"$1" serve --log-level warn; echo $? > "$2"',
            "sh",
            binary,
            str(status_file),
        ],
    )
    run_id = uuid.uuid4().hex[:12]
    base = f"interop/python/{run_id}"

    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            # 1. The 2026 probe is answered quickly (raw, without adopting
            #    the modern era); then the handshake.
            t0 = time.monotonic()
            found = await session.send_discover("2026-07-28")
            versions = found.get("supportedVersions", [])
            check(
                "2026-07-28" in versions and "2025-11-25" in versions,
                f"server/discover lists both eras (got {versions})",
            )
            check(found.get("resultType") == "complete", "server/discover result has resultType")
            check(time.monotonic() - t0 < 2.0, "server/discover answered within 2 s")

            # 2. initialize
            init = await session.initialize()
            check(init.protocol_version == "2025-11-25", f"negotiated {init.protocol_version}")
            check(init.server_info.name == "bitsperity-mqtt-mcp", f"server name {init.server_info.name}")
            check(init.capabilities.tools is not None, "server announces tools")
            await session.send_ping()
            check(True, "ping answered")

            # 3. tools/list with schema checks
            listing = await session.list_tools()
            check(listing.next_cursor is None, "tools/list fits one page")
            tools = {t.name: t for t in listing.tools}
            files = {p.stem: json.loads(p.read_text()) for p in sorted(schema_dir.glob("*.json"))}
            check(set(tools) == set(files), f"tools/list names match schema/ ({len(tools)} tools)")
            for name, tool in sorted(tools.items()):
                for kind, schema in (("inputSchema", tool.input_schema), ("outputSchema", tool.output_schema)):
                    if schema is None:
                        raise CheckFailed(f"{name}: no {kind}")
                    try:
                        Draft202012Validator.check_schema(schema)
                    except Exception as e:  # jsonschema.SchemaError
                        raise CheckFailed(f"{name}.{kind} is not valid draft 2020-12: {e}") from e
                    if schema.get("type") != "object":
                        raise CheckFailed(f"{name}.{kind} is not of type object")
                if tool.input_schema != files[name]["inputSchema"]:
                    raise CheckFailed(f"{name}: inputSchema differs from schema/{name}.json")
            check(True, "every inputSchema and outputSchema is valid JSON Schema draft 2020-12")
            validators = {n: Draft202012Validator(t.output_schema) for n, t in tools.items()}

            def conforms(name: str, sc: dict[str, Any]) -> None:
                errors = sorted(validators[name].iter_errors(sc), key=str)
                if errors:
                    raise CheckFailed(f"{name} structuredContent breaks its outputSchema: {errors[0].message}")

            # 4. a retained publish
            state = {"on": True, "brightness": 42, "name": "Küche ✓"}
            res = await session.call_tool(
                "publish_message",
                {"topic": f"{base}/state", "payload": state, "qos": 1, "retain": True},
            )
            pub = structured(res)
            conforms("publish_message", pub)
            check(pub["status"] == "acknowledged", f"retained publish acknowledged ({pub['status']})")
            check(pub["retain"] is True and pub["qos"] == 1, "publish result echoes retain and qos")

            # 5. collect: the retained message, then a live one published while
            # a collection runs (the subscription starts some time after the
            # call is sent, so publish until the collection has caught one).
            got = structured(
                await session.call_tool(
                    "subscribe_and_collect",
                    {"filter": f"{base}/state", "duration_ms": 10000, "stop_after_first": True},
                )
            )
            conforms("subscribe_and_collect", got)
            check(got["stats"]["stopped_by"] == "first_message", f"retained collect stopped by {got['stats']['stopped_by']}")
            check(len(got["messages"]) == 1, f"one retained message collected (got {len(got['messages'])})")
            msg = got["messages"][0]
            check(msg["topic"] == f"{base}/state" and msg["retain"] is True, "it is the retained message, flagged retain")
            check(msg["payload"]["format"] == "json", f"retained payload decoded as json ({msg['payload']})")
            check(msg["payload"]["json"] == state, "retained payload arrived intact (UTF-8 included)")

            live = f"hello from python {run_id}"
            collected: dict[str, Any] = {}

            async def collect() -> None:
                collected["result"] = await session.call_tool(
                    "subscribe_and_collect",
                    {"filters": [f"{base}/live", f"{base}/other"], "duration_ms": 15000, "stop_after_first": True, "qos": 1},
                )

            publishes = 0
            async with anyio.create_task_group() as tg:
                tg.start_soon(collect)
                with anyio.fail_after(20):
                    while "result" not in collected:
                        await anyio.sleep(0.2)
                        if "result" in collected:
                            break
                        r = await session.call_tool(
                            "publish_message", {"topic": f"{base}/live", "payload": live, "qos": 1}
                        )
                        conforms("publish_message", structured(r))
                        publishes += 1
            check(publishes >= 1, f"{publishes} live publishes sent while collecting")
            got = structured(collected["result"])
            conforms("subscribe_and_collect", got)
            check(got["filters"] == [f"{base}/live", f"{base}/other"], "both filters reported")
            check(got["granted_qos"] == [1, 1], f"QoS 1 granted on both filters ({got['granted_qos']})")
            check(got["stats"]["stopped_by"] == "first_message", f"live collect stopped by {got['stats']['stopped_by']}")
            msg = got["messages"][0]
            check(msg["topic"] == f"{base}/live" and msg["retain"] is False, "live message received, not retained")
            check(
                msg["payload"]["format"] == "text" and msg["payload"].get("text") == live,
                f"live payload arrived intact ({msg['payload']})",
            )

            # Clean the retained message up (an empty retained payload deletes it).
            structured(await session.call_tool("publish_message", {"topic": f"{base}/state", "retain": True}))

            # 6. invalid calls
            bad = await session.call_tool("publish_message", {"topic": "a/#", "payload": "x"})
            check(bad.is_error is True, "publish to a wildcard topic gives isError true")
            msg = " ".join(texts(bad))
            check("#" in msg or "wildcard" in msg.lower(), f"the error names the problem: {msg!r}")

            bad = await session.call_tool("publish_message", {"topic": f"{base}/x", "qos": 7})
            check(bad.is_error is True, "qos 7 gives isError true")
            msg = " ".join(texts(bad))
            check("/qos" in msg, f"the error points at /qos: {msg!r}")

            try:
                await session.call_tool("no_such_tool", {})
                raise CheckFailed("an unknown tool was answered with a result")
            except MCPError as e:
                check(e.code == -32602, f"unknown tool is JSON-RPC -32602 (got {e.code})")

    # 7. clean shutdown: stdin closed by the SDK, the server exits by itself.
    for _ in range(50):
        if status_file.exists() and status_file.read_text().strip():
            break
        await anyio.sleep(0.1)
    status = status_file.read_text().strip() if status_file.exists() else "<none>"
    check(status == "0", f"server exited 0 after stdin closed (status {status})")


def find_check_failed(e: BaseException) -> CheckFailed | None:
    """The CheckFailed inside `e`, however deep the task groups wrapped it."""
    if isinstance(e, CheckFailed):
        return e
    for inner in getattr(e, "exceptions", ()):
        found = find_check_failed(inner)
        if found is not None:
            return found
    return None


def main() -> int:
    if len(sys.argv) != 3:
        print("usage: python_client.py MQTT_MCP_BINARY SCHEMA_DIR", file=sys.stderr)
        return 2
    binary, schema_dir = sys.argv[1], Path(sys.argv[2])
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        status_file = Path(tmp) / "exit-status"
        try:
            anyio.run(run, binary, schema_dir, status_file)
        except BaseException as e:  # noqa: BLE001 - report anything, including ExceptionGroups
            failed = find_check_failed(e)
            if failed is not None:
                print(f"FAIL {failed}", flush=True)
                return 1
            print("FAIL unexpected exception:", flush=True)
            traceback.print_exc(file=sys.stdout)
            return 1
    print(f"python interop passed in {time.monotonic() - started:.1f} s (mcp SDK, pid {os.getpid()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
