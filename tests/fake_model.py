"""A scripted fake of the Anthropic Messages API, for driving the real `claude` CLI in tests.

The CLI is pointed at it with `ANTHROPIC_BASE_URL`. What the fake answers is steered by
markers in the latest prompt, so one server serves every test and every process:

- `[[say:TEXT]]`            answer TEXT (default: `Echo: <prompt>`).
- `[[report]]`              answer a JSON report of the request (model, system prompt, tool
                            names, credentials seen, environment block, other top-level keys,
                            the last user message's image and document blocks).
- `remember WORD` / `what did I ask you to remember`
                            a memory that only works if the history reached the model.
- `[[tool:NAME:JSON]]`      call tool NAME with input JSON first; then answer with the result.
                            Several tool markers run in order, one per model request.
- `[[tool:NAME:b64:DATA]]`  the same, the input JSON given base64-encoded: it may then hold a
                            prompt with markers of its own (a marker ends at the first `]]`).
                            `nested_tool(NAME, **input)` writes one.
- `[[structured:JSON]]`     call the `StructuredOutput` tool (added by `--json-schema`).
- `[[slow:MS]]`             stream the answer one word every MS milliseconds.
- `[[think:TEXT]]`          think TEXT (a thinking block, signed) before the answer.
- `[[stall]]`               start the response, then send nothing more (a stalled stream).
- `[[error:CODE]]`          answer with HTTP CODE and an Anthropic error body.
- a credential (API key or bearer token) containing `revoked` gets 401, whatever the prompt.
- `GET /v1/models` (a key check) answers a model list, or 401 for a `revoked` key; `GET /_key_checks`
  returns the credentials it was asked with.

Every request is recorded; `GET /_requests` returns the records (with the time the first
text chunk was sent) and `POST /_reset` clears them. Run it as
`python -m tests.fake_model [--port N]`; it prints `PORT=<n>` once it listens.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import re
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

MARKER = re.compile(r"\[\[(\w+)(?::(.*?))?\]\]", re.DOTALL)
REMEMBER = re.compile(r"\bremember (\w+)", re.IGNORECASE)
RECALL = re.compile(r"what did i ask you to remember", re.IGNORECASE)
ENCODED = "b64:"
"""A tool marker's input given base64-encoded (its JSON may then contain `]]`)."""
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


@dataclass
class Reply:
    """What the fake model answers to one request."""

    text: str = ""
    tool: tuple[str, dict[str, Any]] | None = None
    delay_s: float = 0.0
    stall: bool = False
    error: int | None = None
    thinking: str | None = None


@dataclass
class Record:
    prompt: str
    model: str
    api_key: str | None
    authorization: str | None = None
    first_text_at: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


RECORDS: list[Record] = []
KEY_CHECKS: list[str] = []
"""The credentials `GET /v1/models` was asked with (key checks), in order."""


def _text_blocks(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    return [b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text"]


def _has_tool_result(content: Any) -> bool:
    return isinstance(content, list) and any(isinstance(b, dict) and b.get("type") == "tool_result" for b in content)


def _tool_result_text(content: list[Any]) -> str:
    for block in content:
        if isinstance(block, dict) and block.get("type") == "tool_result":
            inner = block.get("content")
            if isinstance(inner, list):
                return "".join(_text_blocks(inner))
            return str(inner or "")
    return ""


def _user_prompts(messages: list[dict[str, Any]]) -> list[str]:
    """The prompts a person typed, oldest first (tool results and reminders left out)."""
    prompts = []
    for message in messages:
        # A prompt sent right after a tool result can share its user message.
        if message.get("role") == "user" and (typed := _typed_text(message.get("content"))):
            prompts.append(typed[-1])
    return prompts


def _typed_text(content: Any) -> list[str]:
    """A user message's text blocks a person typed: the CLI's reminders, and the note it adds after
    an image saying where it saved it (`[Image: source: PATH]`), left out."""
    return [t for t in _text_blocks(content) if not t.startswith(("<system-reminder>", "[Image: source: "))]


def _tool_rounds_since_prompt(messages: list[dict[str, Any]]) -> int:
    rounds = 0
    for message in reversed(messages):
        content = message.get("content")
        if message.get("role") == "user" and _typed_text(content):
            break
        if message.get("role") == "assistant" and isinstance(content, list):
            rounds += any(isinstance(b, dict) and b.get("type") == "tool_use" for b in content)
    return rounds


def _last_user_blocks(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The last user message's content blocks other than text: their type and source (a media type,
    and the size and start of base64 data), as an image or a document reached the model."""
    users = [m for m in messages if m.get("role") == "user"]
    content = users[-1].get("content") if users else None
    blocks = []
    for block in content if isinstance(content, list) else []:
        if isinstance(block, dict) and block.get("type") not in ("text", "tool_result"):
            source = dict(block.get("source") or {})
            if isinstance(data := source.get("data"), str):
                source["data"] = f"{len(data)}:{data[:16]}"
            blocks.append({"type": block.get("type"), "source": source})
    return blocks


def _report(body: dict[str, Any], headers: dict[str, str]) -> str:
    system = body.get("system") or []
    env_text = "\n".join(
        "".join(_text_blocks(m.get("content"))) for m in body.get("messages", []) if m.get("role") == "system"
    )
    report = {
        "model": body.get("model"),
        "system": "\n".join(_text_blocks(system)),
        "tools": [t.get("name") for t in body.get("tools") or []],
        "api_key": headers.get("x-api-key"),
        "authorization": headers.get("authorization"),
        "environment": env_text,
        "first_user_text": "\n".join(_text_blocks((body.get("messages") or [{}])[0].get("content", ""))),
        "keys": {k: v for k, v in body.items() if k not in {"messages", "system", "tools"}},
        "blocks": _last_user_blocks(body.get("messages") or []),
    }
    return json.dumps(report)


def plan_reply(body: dict[str, Any], headers: dict[str, str]) -> Reply:
    """Decide the answer from the request alone (the fake keeps no conversation state)."""
    messages: list[dict[str, Any]] = [m for m in body.get("messages", []) if m.get("role") != "system"]
    prompts = _user_prompts(messages)
    prompt = prompts[-1] if prompts else ""
    markers = [(m.group(1), m.group(2)) for m in MARKER.finditer(prompt)]
    reply = Reply()
    for name, arg in markers:
        if name == "slow":
            reply.delay_s = int(arg or "50") / 1000
        elif name == "stall":
            reply.stall = True
        elif name == "error":
            reply.error = int(arg or "500")
        elif name == "think":
            reply.thinking = arg or "Hmm."
    steps = [(n, a) for n, a in markers if n in {"tool", "structured"}]
    rounds = _tool_rounds_since_prompt(messages)
    if rounds < len(steps):
        name, arg = steps[rounds]
        if name == "structured":
            reply.tool = ("StructuredOutput", json.loads(arg or "{}"))
        else:
            tool_name, _, tool_input = (arg or "").partition(":")
            if tool_input.startswith(ENCODED):
                tool_input = base64.b64decode(tool_input.removeprefix(ENCODED)).decode()
            reply.tool = (tool_name, json.loads(tool_input or "{}"))
        return reply
    last = messages[-1] if messages else {}
    say = next((a for n, a in markers if n == "say"), None)
    if rounds and _has_tool_result(last.get("content")):
        reply.text = "TOOL_RESULT: " + _tool_result_text(last["content"])[:2000]
    elif any(n == "report" for n, _ in markers):
        reply.text = _report(body, headers)
    elif say is not None:
        reply.text = say
    elif RECALL.search(prompt):
        remembered = [m.group(1) for p in prompts[:-1] for m in REMEMBER.finditer(p)]
        reply.text = f"You asked me to remember {remembered[-1]}" if remembered else "You asked me nothing."
    elif (found := REMEMBER.search(prompt)) is not None:
        reply.text = f"OK, I will remember {found.group(1)}"
    else:
        reply.text = "Echo: " + MARKER.sub("", prompt).strip()
    return reply


def nested_tool(tool: str, **tool_input: Any) -> str:
    """A marker that makes the fake model call `tool` with `tool_input`, whatever its strings hold
    (a prompt with markers of its own, for a run that delegates again)."""
    encoded = base64.b64encode(json.dumps(tool_input).encode()).decode()
    return f"[[tool:{tool}:{ENCODED}{encoded}]]"


def _block_start(block: dict[str, Any], index: int = 0) -> bytes:
    return _sse("content_block_start", {"type": "content_block_start", "index": index, "content_block": block})


def _block_delta(delta: dict[str, Any], index: int = 0) -> bytes:
    return _sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def _words(text: str) -> list[str]:
    parts = re.findall(r"\S+\s*|\s+", text)
    return parts or [""]


async def _stream(reply: Reply, model: str, record: Record) -> AsyncIterator[bytes]:
    message_id = "msg_" + uuid.uuid4().hex[:20]
    yield _sse(
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 12, "output_tokens": 1},
            },
        },
    )
    if reply.stall:
        await anyio.sleep_forever()
    index = 0  # of the last block
    if reply.tool is not None:
        name, tool_input = reply.tool
        tool_id = "toolu_" + uuid.uuid4().hex[:20]
        yield _block_start({"type": "tool_use", "id": tool_id, "name": name, "input": {}})
        yield _block_delta({"type": "input_json_delta", "partial_json": json.dumps(tool_input)})
        stop_reason = "tool_use"
    else:
        if reply.thinking is not None:
            yield _block_start({"type": "thinking", "thinking": "", "signature": ""})
            yield _block_delta({"type": "thinking_delta", "thinking": reply.thinking})
            yield _block_delta({"type": "signature_delta", "signature": "fake-signature"})
            yield _sse("content_block_stop", {"type": "content_block_stop", "index": 0})
            index = 1
        yield _block_start({"type": "text", "text": ""}, index)
        for word in _words(reply.text):
            if record.first_text_at is None:
                record.first_text_at = time.time()
            yield _block_delta({"type": "text_delta", "text": word}, index)
            if reply.delay_s:
                await anyio.sleep(reply.delay_s)
        stop_reason = "end_turn"
    yield _sse("content_block_stop", {"type": "content_block_stop", "index": index})
    yield _sse(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": 7},
        },
    )
    yield _sse("message_stop", {"type": "message_stop"})


async def messages(request: Request) -> Response:
    body = await request.json()
    headers = {k.lower(): v for k, v in request.headers.items()}
    reply = plan_reply(body, headers)
    prompts = _user_prompts([m for m in body.get("messages", []) if m.get("role") != "system"])
    model = str(body.get("model", "unknown"))
    record = Record(
        prompt=prompts[-1] if prompts else "",
        model=model,
        api_key=headers.get("x-api-key"),
        authorization=headers.get("authorization"),
    )
    RECORDS.append(record)
    if "revoked" in (headers.get("x-api-key") or "") + (headers.get("authorization") or ""):
        reply.error = 401  # a credential the API no longer accepts
    if reply.error is not None:
        error_type = ERROR_TYPES.get(reply.error, "api_error")
        return JSONResponse(
            {"type": "error", "error": {"type": error_type, "message": f"fake model error {reply.error}"}},
            status_code=reply.error,
        )
    if not body.get("stream"):
        text = reply.text or "ok"
        return JSONResponse(
            {
                "id": "msg_x",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [{"type": "text", "text": text}],
                "stop_reason": "end_turn",
                "usage": {"input_tokens": 1, "output_tokens": 1},
            }
        )
    return StreamingResponse(_stream(reply, model, record), media_type="text/event-stream")


async def models(request: Request) -> Response:
    """`GET /v1/models`: what a key check asks (the built-in sign-in's); 401 for a `revoked` key."""
    headers = {k.lower(): v for k, v in request.headers.items()}
    credential = headers.get("x-api-key") or headers.get("authorization") or ""
    KEY_CHECKS.append(credential)
    if not credential or "revoked" in credential:
        error = {"type": "authentication_error", "message": "invalid x-api-key"}
        return JSONResponse({"type": "error", "error": error}, status_code=401)
    model = {
        "type": "model",
        "id": "claude-sonnet-4-5",
        "display_name": "Claude Sonnet 4.5",
        "created_at": "2025-09-29T00:00:00Z",
    }
    return JSONResponse({"data": [model], "has_more": False, "first_id": model["id"], "last_id": model["id"]})


async def key_checks(request: Request) -> Response:
    return JSONResponse(KEY_CHECKS)


async def count_tokens(request: Request) -> Response:
    return JSONResponse({"input_tokens": 10})


async def requests_log(request: Request) -> Response:
    return JSONResponse([record.__dict__ for record in RECORDS])


async def reset(request: Request) -> Response:
    RECORDS.clear()
    return JSONResponse({"ok": True})


app = Starlette(
    routes=[
        Route("/v1/messages", messages, methods=["POST"]),
        Route("/v1/messages/count_tokens", count_tokens, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/_key_checks", key_checks, methods=["GET"]),
        Route("/_requests", requests_log, methods=["GET"]),
        Route("/_reset", reset, methods=["POST"]),
    ]
)


@contextmanager
def running_fake_model() -> Iterator[str]:
    """Start the fake model in a subprocess; yield its base URL; stop it afterwards."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_model", "--port", "0"],
        cwd=Path(__file__).resolve().parent.parent,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    try:
        line = process.stdout.readline()
        if not line.startswith("PORT="):
            raise RuntimeError(f"the fake model did not start: {line!r}")
        yield f"http://127.0.0.1:{int(line.strip().split('=')[1])}"
    finally:
        process.terminate()
        process.wait(timeout=10)
        process.stdout.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    config = uvicorn.Config(app, host="127.0.0.1", port=args.port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)

    async def serve() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve)
            while not server.started:
                await anyio.sleep(0.01)
            port = server.servers[0].sockets[0].getsockname()[1]
            print(f"PORT={port}", flush=True)

    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(serve)
    sys.exit(0)


if __name__ == "__main__":
    main()
