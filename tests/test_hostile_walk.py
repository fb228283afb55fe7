"""Hostile input walked over the whole surface of ONE server (`claude-mcp serve --transport http`
with two tenants, a subprocess on loopback, the real CLI against the fake model): every HTTP route
and every MCP tool, taken from the code (the app's route table, `TOOLS` and each request's model),
so a new route, tool or field is walked without a change here.

Each gets malformed JSON, wrong types, huge strings, deeply nested JSON, huge numbers, path
traversal and NUL ids, unicode garbage (lone surrogates, NUL, bidi), missing or wrong credentials,
foreign Host/Origin, bodies over the caps, and a few clients that trickle their bodies. Every answer
must be a clear refusal in the protocol's shape — the Anthropic error object on `/v1/…`, OpenAI's on
`/v1/chat/…`, a JSON-RPC error or an `isError` tool result on `/mcp` — or, where the input is
legitimately acceptable, a well-formed answer; never a 5xx, never a traceback or a path of the
install, never a refusal of more than 64 KiB. Meanwhile a process of its own polls `/healthz` every
~100 ms (each answer within 1 s) and samples the server's RSS and its CLIs: its own process must stay
within `RSS_HEADROOM_MB` of what it was idle (a CLI's memory is the CLI's, not the server's to bound),
and it may hold no more CLIs than its limits let it run and keep. After the walk no CLI of the walk
runs outside the server's process tree, and none outlives the server.
`test_the_server_stayed_bounded_and_answering_throughout` prints the figures the README states."""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import re
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import anyio
import httpx2
import psutil
import pytest
from pydantic import BaseModel
from starlette.routing import Route

import claude_mcp
from claude_mcp import ClaudeBridge, Policy
from claude_mcp.bridge.tenancy import Tenancy
from claude_mcp.errors import UnfitText
from claude_mcp.http_api.batch_shapes import BatchCreate
from claude_mcp.http_api.inputs import OFF_LOOP_BYTES
from claude_mcp.http_api.openai import ChatRequest
from claude_mcp.http_api.shapes import MessagesRequest
from claude_mcp.mcp_surface.server import build_server
from claude_mcp.mcp_surface.tools import TOOLS
from claude_mcp.web.app import OPEN_PATHS, http_app
from claude_mcp.web.jsonrpc_guard import PREFIX_BYTES, request_id_in
from tests.conftest import STORM, FakeModel, cli_env_for
from tests.test_http import ALICE, RunningServer, serving, tenants_config

pytestmark = [pytest.mark.anyio, STORM]  # it loads both cores: never beside another such test

MB = 1000 * 1000
MiB = 1024 * 1024
RSS_HEADROOM_MB = 300
"""How far above its idle RSS the server's process may go during the walk."""
MAX_CONCURRENT, MAX_WARM = 2, 1
"""The walked server's `max_concurrent` and `max_warm`."""
TENANTS = 2
MOST_CLIS = TENANTS * (MAX_CONCURRENT + MAX_WARM)
"""The most CLIs the walked server may hold at once: each tenant's runs and its warm ones."""
HEALTHZ_WITHIN_S = 1.0
POLL_EVERY_S = 0.1
AT_ONCE = 4
"""Requests of one case in flight together."""
ANSWER_WITHIN_S = 20

# --- the surface, as the code defines it -------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """One method of one HTTP route."""

    template: str
    method: str

    @property
    def params(self) -> list[str]:
        return re.findall(r"{(\w+)(?::\w+)?}", self.template)

    def path(self, **values: str) -> str:
        """The path with each parameter given (already URL-encoded); unnamed ones get a well-formed unknown id."""
        return re.sub(
            r"{(\w+)(?::\w+)?}", lambda m: values.get(m[1], f"{m[1].removesuffix('_id')}_01walk00000000"), self.template
        )

    @property
    def shape(self) -> str:
        if self.template.startswith("/v1/chat/"):
            return "openai"
        return "anthropic" if self.template.startswith("/v1/") else "open"

    @property
    def takes_body(self) -> bool:
        return self.method in ("POST", "PUT", "PATCH")

    def __str__(self) -> str:
        return f"{self.method} {self.template}"


def the_surface() -> tuple[list[Endpoint], list[str]]:
    """Every method of every HTTP route of the app `serve` runs (built here in process, nothing started),
    plus the paths answered in front of it; and the MCP transport's paths (routes that take every method)."""
    tenancy = Tenancy.single(ClaudeBridge(Policy(), depth=0))
    app = http_app(build_server(tenancy), tenancy, "http", "127.0.0.1", (), api_heartbeat_s=15)
    endpoints: list[Endpoint] = []
    transports: list[str] = []
    for route in app.routes:
        assert isinstance(route, Route), route
        if route.methods is None:
            transports.append(route.path)
        else:
            endpoints += [Endpoint(route.path, method) for method in sorted(route.methods - {"HEAD"})]
    endpoints += [Endpoint(path, "GET") for path in sorted(OPEN_PATHS) if Endpoint(path, "GET") not in endpoints]
    return endpoints, transports


ENDPOINTS, MCP_PATHS = the_surface()
MCP_PATH = MCP_PATHS[0]

WALKED = "[[say:walked]]"
"""The prompt of every otherwise valid request (the fake model answers it at once)."""
MESSAGES = {"model": "sonnet", "max_tokens": 16, "messages": [{"role": "user", "content": WALKED}]}
CHAT = {"model": "sonnet", "messages": [{"role": "system", "content": "Walk."}, {"role": "user", "content": WALKED}]}
BATCH = {"requests": [{"custom_id": "walk-1", "params": MESSAGES}]}


@dataclass(frozen=True)
class BodyShape:
    """A route's valid body, the model that reads it, where its prompt is, and models nested in it."""

    base: dict[str, Any]
    model: type[BaseModel]
    prompt: tuple[str | int, ...]
    nested: dict[tuple[str | int, ...], type[BaseModel]] = field(default_factory=dict)


BODIES = {
    "/v1/messages": BodyShape(MESSAGES, MessagesRequest, ("messages", 0, "content")),
    "/v1/messages/count_tokens": BodyShape(MESSAGES, MessagesRequest, ("messages", 0, "content")),
    "/v1/chat/completions": BodyShape(CHAT, ChatRequest, ("messages", 1, "content")),
    "/v1/messages/batches": BodyShape(
        BATCH,
        BatchCreate,
        ("requests", 0, "params", "messages", 0, "content"),
        {("requests", 0, "params"): MessagesRequest},
    ),
}
"""What a route's body is (a POST route not named here gets the shapeless hostile bodies only)."""
GENERIC = BodyShape({"prompt": WALKED}, BaseModel, ("prompt",))


def fields_of(shape: BodyShape) -> list[tuple[Any, ...]]:
    """(path in the body, JSON schema, $defs) of each field of the body's model, of each item of the base
    body's lists of models (a message's role and content), and of the models nested in it."""
    found: list[tuple[Any, ...]] = []

    def walk(model: type[BaseModel], base: dict[str, Any], at: tuple[str | int, ...]) -> None:
        schema = model.model_json_schema()
        defs = schema.get("$defs", {})
        for name, prop in schema.get("properties", {}).items():
            found.append(((*at, name), prop, defs))
            items = prop.get("items", {})
            if "$ref" in items:
                for index in range(len(base.get(name) or [None])):
                    for sub, subprop in defs[items["$ref"].rsplit("/", 1)[1]].get("properties", {}).items():
                        found.append(((*at, name, index, sub), subprop, defs))

    walk(shape.model, shape.base, ())
    for at, inner in shape.nested.items():
        walk(inner, reached(shape.base, at), at)
    return found


def reached(body: Any, at: tuple[str | int, ...]) -> Any:
    for step in at:
        body = body[step]
    return body


# --- hostile values ------------------------------------------------------------------------------------------

GARBAGE = "\ud800\udfff\u202e\u0000\U0001f4a5\uffff\U0010ffff\u0301\u200b"
"""Lone surrogates (valid as JSON escapes, not as UTF-8), NUL, a bidi override, an emoji, noncharacters."""
TRAVERSAL = "../../../../etc/passwd\u0000"


def nested_list(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


def nested_object(depth: int) -> Any:
    value: Any = {}
    for _ in range(depth):
        value = {"a": value}
    return value


BY_KIND: dict[str, list[tuple[str, Any]]] = {
    "string": [
        ("a number", 12345),
        ("an object", {"$": [1]}),
        ("300 KB", "x" * 300_000),
        ("unicode garbage", GARBAGE),
        ("lone surrogates", "\ud800walk\udfff"),
        ("traversal", TRAVERSAL),
        ("empty", ""),
    ],
    "integer": [("1e308", 1e308), ("-1e20", -1e20), ("10**30", 10**30), ("'NaN'", "NaN"), ("2**63", 2**63)],
    "number": [
        ("1e308", 1e308),
        ("-1e20", -1e20),
        ("'NaN'", "NaN"),
        ("'-Infinity'", "-Infinity"),
        ("10**400", 10**400),
    ],
    "boolean": [("'yes'", "yes"), ("2", 2)],
    "array": [("a string", "not a list"), ("100 items", [0] * 100), ("150 deep", nested_list(150))],
    "object": [("a list", [1]), ("150 deep", nested_object(150)), ("100 keys", {f"k{i}": i for i in range(100)})],
    "enum": [("an unknown value", "unknown\u0000value"), ("a number", 5)],
    "any": [("150 deep", nested_object(150)), ("1e308", 1e308), ("unicode garbage", GARBAGE)],
}
"""What each JSON type of a field is given (within every body cap: deeper, larger and longer is walked once a
route or tool, and a list or object of very many items once a field of those types: `many_items`)."""


def many_items(kind: str, count: int) -> Any:
    return [0] * count if kind == "array" else {f"k{i:07}": 0 for i in range(count)}


@functools.cache
def many_items_json(kind: str, count: int) -> bytes:
    """`many_items` as compact JSON, made once per size: the walk places each size in many bodies."""
    return encoded(many_items(kind, count))


def kinds(schema: dict[str, Any], defs: dict[str, Any]) -> list[str]:
    if "$ref" in schema:
        return kinds(defs[schema["$ref"].rsplit("/", 1)[1]], defs)
    if "anyOf" in schema:
        return list(dict.fromkeys(kind for option in schema["anyOf"] for kind in kinds(option, defs)))
    found = ["enum"] if "enum" in schema or "const" in schema else []
    declared = schema.get("type")
    types = declared if isinstance(declared, list) else [declared] if declared else (["any"] if not found else [])
    return [*found, *(t for t in types if t != "null")]


def hostile_values(schema: dict[str, Any], defs: dict[str, Any]) -> list[tuple[str, Any]]:
    values = [value for kind in kinds(schema, defs) for value in BY_KIND.get(kind, BY_KIND["any"])]
    return list({label: (label, value) for label, value in values}.values())


def placed(base: Any, at: tuple[str | int, ...], value: Any) -> Any:
    """A deep copy of `base` with `value` at path `at` (a dict key missing on the way is added)."""
    copy = json.loads(json.dumps(base))
    target = copy
    for step in at[:-1]:
        target = target[step] if not isinstance(target, dict) else target.setdefault(step, {})
    target[at[-1]] = value
    return copy


def encoded(value: Any) -> bytes:
    """Compact ASCII JSON: lone surrogates travel as \\ud800 escapes, as a JSON client may send them."""
    return json.dumps(value, separators=(",", ":")).encode()


def deep_json(body: dict[str, Any], at: tuple[str | int, ...], depth: int) -> bytes:
    """`body` with JSON nested `depth` levels deep at `at`."""
    marker = "__deep__"
    return encoded(placed(body, at, marker)).replace(b'"__deep__"', b"[" * depth + b"]" * depth)


def raw_at(body: dict[str, Any], at: tuple[str | int, ...], raw: bytes) -> bytes:
    """`body` with the raw bytes `raw` (not necessarily JSON) where the value at `at` is."""
    return encoded(placed(body, at, "__raw__")).replace(b'"__raw__"', raw)


# --- what an answer must be ----------------------------------------------------------------------------------

INSTALL = [str(Path(claude_mcp.__file__).resolve().parent.parent), sys.prefix, sysconfig.get_paths()["stdlib"]]
TRACEBACK = re.compile(r'Traceback \(most recent call last\)|File "[^"]+", line \d+')
REFUSAL_MOST_BYTES = 64 * 1024
"""A refusal says what is wrong in a few lines, however much was wrong."""


@dataclass
class Answer:
    status: int
    content_type: str
    text: str


def leaks(text: str) -> list[str]:
    found = ["a traceback"] if TRACEBACK.search(text) else []
    return found + [f"the install path {path}" for path in INSTALL if path in text]


def sse_events(text: str) -> list[tuple[str, Any]]:
    events = []
    for block in re.split(r"\r?\n\r?\n", text):
        name, data = "message", []
        for line in block.splitlines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
        if data:
            try:
                events.append((name, json.loads("\n".join(data))))
            except ValueError:
                events.append((name, "\n".join(data)))
    return events


def api_problems(shape: str, answer: Answer) -> list[str]:
    """What is wrong with an answer of the HTTP APIs (`anthropic`, `openai`) or of an open path (`open`)."""
    if answer.status == 0:
        return [answer.text]
    problems = leaks(answer.text)
    if answer.status >= 500:
        problems.append(f"status {answer.status}: {answer.text[:200]}")
    if answer.status >= 400 and len(answer.text) > REFUSAL_MOST_BYTES:
        problems.append(f"a refusal of {len(answer.text):,} characters")
    if shape == "open" or not answer.text:
        return problems  # an open path need not speak an API's shape; a HEAD or 204 has no body
    if "text/event-stream" in answer.content_type:
        for name, data in sse_events(answer.text):
            if name == "error" and not (isinstance(data, dict) and {"type", "message"} <= set(data.get("error", {}))):
                problems.append(f"a stream's error event out of shape: {str(data)[:200]}")
        return problems
    try:
        body = json.loads(answer.text)
    except ValueError:
        return [*problems, f"status {answer.status} with a body that is not JSON: {answer.text[:200]!r}"]
    if answer.status < 400:
        return problems
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(body, dict) or not isinstance(error, dict):
        return [*problems, f"status {answer.status}, not the {shape} error shape: {answer.text[:200]}"]
    well_formed = body.get("type") == "error" if shape == "anthropic" else set(body) == {"error"}
    if not (well_formed and isinstance(error.get("type"), str) and isinstance(error.get("message"), str)):
        problems.append(f"status {answer.status}, not the {shape} error shape: {answer.text[:200]}")
    elif not error["message"].strip():
        problems.append(f"status {answer.status} with an empty message")
    return problems


def mcp_problems(answer: Answer, request_id: Any, tool_call: bool) -> list[str]:
    """What is wrong with an answer of the MCP transport to a JSON-RPC request (or to what was meant as one):
    a `tools/call` is answered with a JSON-RPC error, a refusal (`isError`) or a structured result."""
    if answer.status == 0:
        return [answer.text]
    problems = leaks(answer.text)
    if answer.status >= 500:
        problems.append(f"status {answer.status}: {answer.text[:200]}")
    if answer.status == 202 and request_id is None:
        return problems  # a notification (or what the server took for one)
    if "text/event-stream" in answer.content_type:
        messages = [data for _, data in sse_events(answer.text)]
    else:
        try:
            messages = [json.loads(answer.text)]
        except ValueError:
            messages = []
    if not messages:
        return [*problems, f"status {answer.status}, not JSON: {answer.text[:200]!r}"]
    ours = [m for m in messages if isinstance(m, dict) and ("result" in m or "error" in m or "error_description" in m)]
    if not ours:
        return [*problems, f"status {answer.status}, no response in {answer.text[:200]!r}"]
    message = ours[-1]
    if "error_description" in message:  # the transport's authentication refusal (OAuth's shape)
        if answer.status not in (401, 403):
            problems.append(f"an OAuth error with status {answer.status}")
    elif "error" in message:
        error = message["error"]
        if not (
            isinstance(error, dict) and isinstance(error.get("code"), int) and isinstance(error.get("message"), str)
        ):
            problems.append(f"a JSON-RPC error out of shape: {str(message)[:200]}")
    else:
        result = message["result"]
        if not isinstance(result, dict):
            problems.append(f"a result that is not an object: {str(result)[:200]}")
        elif tool_call and not result.get("isError") and "structuredContent" not in result:
            problems.append(f"a tool result neither refused nor structured: {str(result)[:200]}")
        elif result.get("isError") and len(answer.text) > REFUSAL_MOST_BYTES:
            problems.append(f"a refusal of {len(answer.text):,} characters")
    return problems


# --- the server, and what watches it -------------------------------------------------------------------------


WATCHER = """
import json, sys, time, urllib.request
import psutil
url, pid, every = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
server = psutil.Process(pid)
def is_cli(process):
    try:
        return process.name().startswith("claude") and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
while True:
    start = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            status = response.status
    except Exception:
        status = None
    took = time.monotonic() - start
    try:
        own = server.memory_info().rss
        clis = sum(1 for child in server.children(recursive=True) if is_cli(child))
    except psutil.Error:
        break
    print(json.dumps([start, took, status, own / 1e6, clis]), flush=True)
    time.sleep(max(0.0, every - took))
"""
"""Polls `/healthz` (a new connection each time) and samples the server's RSS and how many CLIs it holds,
in a process of its own so that what the walk does in the test's process (building and sending large
bodies) does not delay it."""


@dataclass
class Sample:
    at: float
    healthz_s: float
    healthz_status: int | None
    own_rss_mb: float
    clis: int


class Watch:
    """The watcher process, and the samples it has reported (its pipe read by a thread of its own)."""

    def __init__(self, server: RunningServer) -> None:
        self.samples: list[Sample] = []
        self.process = subprocess.Popen(
            [sys.executable, "-c", WATCHER, server.base + "/healthz", str(server.process.pid), str(POLL_EVERY_S)],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.samples.append(Sample(*json.loads(line)))

    def stop(self) -> None:
        """The watcher killed and reaped, its reader finished and its pipe closed (an unclosed pipe is a
        ResourceWarning in whichever test runs next on this worker)."""
        try:
            self.process.kill()
        finally:
            self.process.wait()
            self.reader.join(timeout=10)
            assert self.process.stdout is not None
            self.process.stdout.close()

    def since(self, start: float) -> list[Sample]:
        return [s for s in self.samples if s.at >= start]


def own_rss_mb(pid: int) -> float:
    return float(psutil.Process(pid).memory_info().rss) / MB


def walk_clis(directory: Path) -> list[psutil.Process]:
    """The CLI processes started for the walk (their home or config dir is under its directory), wherever
    they are."""
    found = []
    for process in psutil.process_iter(["name"]):
        with contextlib.suppress(psutil.Error):
            if (process.info["name"] or "").startswith("claude") and process.status() != psutil.STATUS_ZOMBIE:
                environ = process.environ()
                if any(environ.get(name, "").startswith(str(directory)) for name in ("CLAUDE_CONFIG_DIR", "HOME")):
                    found.append(process)
    return found


@dataclass
class Walk:
    server: RunningServer
    watch: Watch
    directory: Path
    """The walk's directory (the server's state, the CLIs' home and config dirs are under it)."""
    idle_own_mb: float
    session: dict[str, str]
    """The headers of an initialized MCP session (alice's)."""
    existing: dict[str, str]
    """Ids that exist (a conversation, a finished job), for the tools' other fields to be walked past them."""
    walked: int = 0
    """Requests sent."""
    spans: list[tuple[float, float, str]] = field(default_factory=list)
    """When each request was in flight, and what it was."""
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(100))

    @property
    def base(self) -> str:
        return self.server.base

    @property
    def rss_bound_mb(self) -> float:
        return self.idle_own_mb + RSS_HEADROOM_MB

    def in_flight(self, sample: Sample) -> list[str]:
        return [label for start, end, label in self.spans if start <= sample.at + sample.healthz_s and end >= sample.at]

    def health_problems(self, since: float) -> list[str]:
        """Whether since `since` /healthz answered within its second, the server's RSS stayed within its
        bound above idle, and it held no more CLIs than its limits allow."""
        samples = self.watch.since(since)
        problems = [
            f"/healthz took {s.healthz_s:.2f} s ({s.healthz_status}) while {self.in_flight(s)[:6]}"
            for s in samples
            if s.healthz_status != 200 or s.healthz_s > HEALTHZ_WITHIN_S
        ][:5]
        problems += [
            f"the server's RSS {s.own_rss_mb:.0f} MB, over {self.rss_bound_mb:.0f}, while {self.in_flight(s)[:6]}"
            for s in samples
            if s.own_rss_mb > self.rss_bound_mb
        ][:3]
        problems += [
            f"the server held {s.clis} CLIs, more than {MOST_CLIS}, while {self.in_flight(s)[:6]}"
            for s in samples
            if s.clis > MOST_CLIS
        ][:3]
        return problems


MCP_HEADERS = {
    "Authorization": f"Bearer {ALICE}",
    "Accept": "application/json, text/event-stream",
    "Content-Type": "application/json",
}


def rpc(http: httpx2.Client, url: str, headers: dict[str, str], message: dict[str, Any]) -> Any:
    response = http.post(url, headers=headers, json=message)
    response.raise_for_status()
    return [data for _, data in sse_events(response.text) if isinstance(data, dict) and "id" in data][-1]


def set_up(server: RunningServer) -> tuple[dict[str, str], dict[str, str]]:
    """An initialized MCP session of alice's, and a conversation and a finished job of hers."""
    with httpx2.Client(timeout=60) as http:
        hello = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "walk", "version": "1"}}
        response = http.post(
            server.url, headers=MCP_HEADERS, json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": hello}
        )
        response.raise_for_status()
        version = [d for _, d in sse_events(response.text)][-1]["result"]["protocolVersion"]
        session = {**MCP_HEADERS, "mcp-session-id": response.headers["mcp-session-id"], "mcp-protocol-version": version}
        http.post(server.url, headers=session, json={"jsonrpc": "2.0", "method": "notifications/initialized"})
        asked = rpc(http, server.url, session, tool_call(2, "ask", {"prompt": WALKED}))
        ran = rpc(http, server.url, session, tool_call(3, "run_agent", {**AGENT, "wait_s": 30}))
    return session, {
        "session_id": asked["result"]["structuredContent"]["session_id"],
        "job_id": ran["result"]["structuredContent"]["job_id"],
    }


AGENT = {"agent": "walker", "prompt": WALKED, "agents": {"walker": {"description": "Walks", "prompt": "You walk."}}}


def tool_call(request_id: Any, name: Any, arguments: Any) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments},
    }


@pytest.fixture(scope="module")
def walk(tmp_path_factory: pytest.TempPathFactory, fake_model: FakeModel) -> Iterator[Walk]:
    tmp = tmp_path_factory.mktemp("walk")
    workdir, home = tmp / "work", tmp / "home"
    workdir.mkdir()
    home.mkdir()
    config = tenants_config(tmp / "tenants.toml", workdir, cli_env_for(fake_model.url, home))
    text = config.read_text().replace("max_concurrent = 8", f"max_concurrent = {MAX_CONCURRENT}")
    # Every body cap below 5 MB (the batch cap is 64 MiB by default), so the 5 MB bodies are over all of them.
    config.write_text(f"max_batch_mb = 4\nmax_warm = {MAX_WARM}\n{text}")
    with serving(tmp, config, "http", name="walk") as server:
        watch: Watch | None = None
        try:
            session, existing = set_up(server)
            time.sleep(1)  # what the set-up started settles
            idle = []
            for _ in range(5):
                idle.append(own_rss_mb(server.process.pid))
                time.sleep(0.1)
            watch = Watch(server)
            yield Walk(server, watch, tmp, max(idle), session, existing)
        finally:
            if watch is not None:
                watch.stop()
            try:
                httpx2.get(server.base + "/healthz", timeout=3)
            except httpx2.HTTPError:
                server.process.kill()  # hung by what it was sent: SIGTERM would not stop it either
    deadline = time.monotonic() + 10
    while (left := walk_clis(tmp)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"CLIs of the walk outlived its server: {[p.cmdline()[:2] for p in left]}"


# --- sending -----------------------------------------------------------------------------------------------


@dataclass
class Sent:
    """One hostile request and what is expected of its answer."""

    label: str
    method: str
    path: str
    shape: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | Callable[[], AsyncIterator[bytes]] | None = None
    rpc_id: Any = None
    """For `/mcp`: the JSON-RPC id the answer is for (None: a notification, or not JSON-RPC at all)."""
    tool_call: bool = False
    within_s: float = ANSWER_WITHIN_S
    """How long the answer may take (a run's included)."""


async def send(http: httpx2.AsyncClient, walk: Walk, sent: Sent) -> Answer:
    content = sent.body() if callable(sent.body) else sent.body
    headers: Any = {k: v if v.isascii() else v.encode() for k, v in sent.headers.items()}  # garbage: UTF-8 bytes
    try:
        with anyio.fail_after(sent.within_s):
            response = await http.request(sent.method, walk.base + sent.path, headers=headers, content=content)
    except (httpx2.HTTPError, TimeoutError) as exc:
        return Answer(0, "", f"no answer: {exc!r}")
    return Answer(response.status_code, response.headers.get("content-type", ""), response.text)


async def sent_all(walk: Walk, batch: list[Sent]) -> list[str]:
    """Send `batch` (a few at a time); what was wrong with the answers, each prefixed by the request, and
    with the server's health meanwhile."""
    problems: list[str] = []
    limiter = anyio.CapacityLimiter(AT_ONCE)
    start = time.monotonic()
    async with httpx2.AsyncClient(timeout=30) as http, anyio.create_task_group() as tasks:
        for sent in batch:
            tasks.start_soon(sent_one, walk, http, sent, limiter, problems)
    return problems + walk.health_problems(start)


async def sent_one(
    walk: Walk, http: httpx2.AsyncClient, sent: Sent, limiter: anyio.CapacityLimiter, problems: list[str]
) -> None:
    async with limiter:
        began = time.monotonic()
        answer = await send(http, walk, sent)
        walk.spans.append((began, time.monotonic(), f"{sent.label} [{sent.method} {sent.path[:60]}]"))
    walk.walked += 1
    found = (
        mcp_problems(answer, sent.rpc_id, sent.tool_call) if sent.shape == "mcp" else api_problems(sent.shape, answer)
    ) + await cleaned_up(http, walk, sent, answer)
    problems.extend(f"{sent.label} [{sent.method} {sent.path[:80]}]: {p}" for p in found)


async def cleaned_up(http: httpx2.AsyncClient, walk: Walk, sent: Sent, answer: Answer) -> list[str]:
    """A batch the walk's input created is cancelled (its requests would run in the background)."""
    if sent.path == "/v1/messages/batches" and sent.method == "POST" and answer.status == 200:
        batch_id = json.loads(answer.text)["id"]
        cancelled = await http.post(f"{walk.base}/v1/messages/batches/{batch_id}/cancel", headers={**KEY, **JSON})
        return [] if cancelled.status_code == 200 else [f"its batch could not be cancelled: {cancelled.text[:200]}"]
    return []


# --- the HTTP routes ---------------------------------------------------------------------------------------

KEY = {"x-api-key": ALICE}
JSON = {"content-type": "application/json"}
IDS = [
    ("an unknown id", "msgbatch_01walkunknown0000000000"),
    ("a traversal, encoded", quote("../../../etc/passwd", safe="")),
    ("dot-dot, encoded", "%2E%2E"),
    ("NUL", "%00"),
    ("invalid UTF-8", "%FF%FE%FD"),
    ("unicode garbage", quote("\u202e\U0001f4a5\uffff\u0301", safe="")),
    ("8,000 characters", "x" * 8000),
]
QUERY_NAMES = ["limit", "page", "before_id", "after_id", "starting_at", "ending_at", "bucket_width", "group_by[]"]
QUERY_VALUES = [
    ("1e308", "1e308"),
    ("-1e20", "-1e20"),
    ("99999999999999999999999", "99999999999999999999999"),
    ("NaN", "NaN"),
    ("a traversal", "../../etc/passwd"),
    ("NUL", "\u0000"),
    ("unicode garbage", "\u202e\U0001f4a5\uffff"),
    ("year 9999", "9999-12-31T23:59:59Z"),
    ("4,000 characters", "9" * 4000),
]
VALID_QUERY = {"starting_at": "2026-01-01T00:00:00Z", "ending_at": "2026-01-01T04:00:00Z", "bucket_width": "1h"}
"""Ignored where not read; the reports need it, so each hostile parameter is walked past the others."""


def header_cases(endpoint: Endpoint) -> list[Sent]:
    path = endpoint.path()
    body = encoded(BODIES.get(endpoint.template, GENERIC).base) if endpoint.takes_body else None
    cases = [
        ("no key", {}),
        ("a wrong key", {"x-api-key": "sk-ant-api03-" + "A" * 93, "authorization": "Bearer wrong"}),
        ("an 8 KB key of garbage", {"x-api-key": "\u202e" * 2 + "k" * 8000}),
        ("a foreign Host", {**KEY, "host": "evil.example"}),
        ("a foreign Origin", {**KEY, "origin": "http://evil.example"}),
        ("a traversal session header", {**KEY, "x-claude-session-id": "../../etc/passwd"}),
        ("a garbage credential header", {**KEY, "x-claude-credential": "\u202e\U0001f4a5"}),
        ("text/plain", {**KEY, "content-type": "text/plain"}),
    ]
    return [
        Sent(label, endpoint.method, path, endpoint.shape, {**JSON, **headers}, body)
        for label, headers in cases
        if endpoint.takes_body or label != "text/plain"
    ]


def id_cases(endpoint: Endpoint) -> list[Sent]:
    return [
        Sent(f"{name}: {label}", endpoint.method, endpoint.path(**{name: value}), endpoint.shape, {**KEY, **JSON})
        for name in endpoint.params
        for label, value in IDS
    ]


def query_cases(endpoint: Endpoint) -> list[Sent]:
    return [
        Sent(
            f"{name}={label}",
            endpoint.method,
            f"{endpoint.path()}?{urlencode({**VALID_QUERY, name: value})}",
            endpoint.shape,
            KEY,
        )
        for name in QUERY_NAMES
        for label, value in QUERY_VALUES
    ]


def over_the_cap() -> AsyncIterator[bytes]:
    """9 MiB without a Content-Length (chunked): over every body cap, found out only by reading."""

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"model":"sonnet","max_tokens":16,"messages":[{"role":"user","content":"'
        for _ in range(9 * 16):
            yield b"x" * (MiB // 16)
        yield b'"}]}'

    return chunks()


def shapeless_body_cases(endpoint: Endpoint) -> list[Sent]:
    shape = BODIES.get(endpoint.template, GENERIC)
    base = shape.base
    bodies: list[tuple[str, Any]] = [
        ("malformed JSON", encoded(base)[:-7]),
        ("a list", b"[1, 2, 3]"),
        ("a string", b'"hello"'),
        ("null", b"null"),
        ("empty", b""),
        ("a NaN literal", raw_at(base, shape.prompt, b"NaN")),
        ("10,000 levels deep", deep_json(base, shape.prompt, 10_000)),
        ("a 5,000-digit integer", raw_at(base, shape.prompt, b"1" + b"0" * 5000)),
        ("invalid UTF-8", raw_at(base, shape.prompt, b'"\xff\xfe\xfd"')),
        ("a 5 MB prompt", encoded(placed(base, shape.prompt, "x" * (5 * MB)))),
        ("9 MiB declared", encoded(placed(base, shape.prompt, "x" * (9 * MiB)))),
        ("9 MiB chunked", over_the_cap),
    ]
    return [
        Sent(label, endpoint.method, endpoint.path(), endpoint.shape, {**KEY, **JSON}, body) for label, body in bodies
    ]


def field_cases(endpoint: Endpoint, at: tuple[Any, ...], schema: dict[str, Any], defs: dict[str, Any]) -> list[Sent]:
    base = BODIES[endpoint.template].base
    return [
        Sent(label, endpoint.method, endpoint.path(), endpoint.shape, {**KEY, **JSON}, encoded(placed(base, at, value)))
        for label, value in hostile_values(schema, defs)
    ]


def many_items_cases(endpoint: Endpoint) -> list[Sent]:
    """Each list or object field of the body given as many items of the wrong type as fit in a body decoded
    on the event loop (`OFF_LOOP_BYTES`), then a million list items (2 MB) / 200,000 object keys."""
    shape = BODIES[endpoint.template]
    sent = []
    for on_loop, (at, schema, defs) in itertools.product((True, False), fields_of(shape)):
        for kind in sorted({"array", "object"} & set(kinds(schema, defs))):
            if on_loop:
                room = OFF_LOOP_BYTES - len(encoded(shape.base)) - 64
                count = room * 1000 // len(encoded(many_items(kind, 1000)))
            else:
                count = 1_000_000 if kind == "array" else 200_000
            body = raw_at(shape.base, at, many_items_json(kind, count))
            assert not on_loop or len(body) <= OFF_LOOP_BYTES
            where = ".".join(str(step) for step in at)
            sent.append(Sent(f"{where}: {count:,} items", endpoint.method, endpoint.path(), endpoint.shape,
                             {**KEY, **JSON}, body))  # fmt: skip
    return sent


Case = Callable[[Walk], list[Sent]]
"""What one case sends (the walk gives it the ids that exist)."""


def of(make: Callable[..., list[Sent]], *args: Any) -> Case:
    """A case of requests that need nothing of the walk."""
    return lambda walk: make(*args)


def of_walk(make: Callable[..., list[Sent]], *args: Any) -> Case:
    return lambda walk: make(walk, *args)


def http_cases() -> list[tuple[str, Case]]:
    cases: list[tuple[str, Case]] = []
    for e in ENDPOINTS:
        cases.append((f"{e} headers", of(header_cases, e)))
        if e.params:
            cases.append((f"{e} ids", of(id_cases, e)))
        if e.method == "GET":
            cases.append((f"{e} queries", of(query_cases, e)))
        if e.takes_body:
            cases.append((f"{e} bodies", of(shapeless_body_cases, e)))
        if e.takes_body and (shape := BODIES.get(e.template)) is not None:
            for at, schema, defs in fields_of(shape):
                cases.append((f"{e} {'.'.join(str(step) for step in at)}", of(field_cases, e, at, schema, defs)))
            cases.append((f"{e} many items", of(many_items_cases, e)))
    return cases


async def test_a_body_over_the_cap_is_refused_before_it_is_read(walk: Walk) -> None:
    """A client that declares a 100 MB body and sends only its first 64 KiB gets its 413 (or 401) at
    once, in the API's shape: the server does not wait for a body it will not take."""
    parts = urlsplit(walk.base)
    problems = []
    for endpoint in [e for e in ENDPOINTS if e.takes_body and e.shape != "open"]:
        for headers in (KEY, {}):
            head = [f"{endpoint.method} {endpoint.path()} HTTP/1.1", f"Host: {parts.netloc}",
                    "Content-Type: application/json", f"Content-Length: {100 * MB}",
                    *(f"{k}: {v}" for k, v in headers.items())]  # fmt: skip
            with anyio.fail_after(10):
                async with await anyio.connect_tcp(parts.hostname or "127.0.0.1", parts.port or 80) as stream:
                    await stream.send(("\r\n".join(head) + "\r\n\r\n").encode() + b"x" * (64 * 1024))
                    answer = await raw_answer(stream)
            walk.walked += 1
            found = api_problems(endpoint.shape, answer)
            if answer.status not in (401, 404, 405, 413):
                found.append(f"status {answer.status}: {answer.text[:200]}")
            problems += [f"{endpoint} {'with' if headers else 'without'} a key: {p}" for p in found]
    assert not problems, "\n".join(problems)


async def raw_answer(stream: anyio.abc.ByteStream) -> Answer:
    """The answer read off a connection by hand: its status, Content-Type and body (de-chunked)."""
    received = b""
    while b"\r\n\r\n" not in received:
        received += await stream.receive()
    top, _, rest = received.partition(b"\r\n\r\n")
    kind = re.search(rb"(?im)^content-type: *([^\r\n]+)", top)
    length = re.search(rb"(?im)^content-length: *([0-9]+)", top)
    body = b""
    if length is not None:
        while len(rest) < int(length[1]):
            rest += await stream.receive()
        body = rest[: int(length[1])]
    else:  # chunked (an event stream)
        while True:
            while b"\r\n" not in rest:
                rest += await stream.receive()
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                break
            while len(rest) < size + 2:
                rest += await stream.receive()
            body, rest = body + rest[:size], rest[size + 2 :]
    return Answer(int(top.split()[1]), kind[1].decode() if kind else "", body.decode(errors="replace"))


# --- the MCP transport and its tools -----------------------------------------------------------------------


def mcp_sent(
    walk: Walk, label: str, message: Any, headers: dict[str, str] | None = None, raw: bytes | None = None
) -> Sent:
    rpc_id = message.get("id") if isinstance(message, dict) else None
    tool_call = isinstance(message, dict) and message.get("method") == "tools/call"
    body = raw if raw is not None else encoded(message)
    return Sent(label, "POST", MCP_PATH, "mcp", walk.session if headers is None else headers, body, rpc_id, tool_call)


def ping(walk: Walk, **changes: Any) -> dict[str, Any]:
    """A ping of an id of its own (two requests in flight with one id: `MCP duplicate ids`)."""
    return {"jsonrpc": "2.0", "id": next(walk.ids), "method": "ping", **changes}


def transport_cases(walk: Walk) -> list[Sent]:
    """The transport itself: what reaches no tool."""
    session = walk.session
    without = {name: {k: v for k, v in session.items() if k != name} for name in ("Authorization", "Accept")}
    return [
        mcp_sent(walk, "no token", ping(walk), without["Authorization"]),
        mcp_sent(walk, "a wrong token", ping(walk), {**session, "Authorization": "Bearer wrong"}),
        mcp_sent(walk, "no Accept", ping(walk), without["Accept"]),
        mcp_sent(walk, "an unknown session", ping(walk), {**session, "mcp-session-id": "../../etc/passwd"}),
        mcp_sent(walk, "a garbage session", ping(walk), {**session, "mcp-session-id": "\u202e\U0001f4a5"}),
        mcp_sent(walk, "no session", ping(walk), {k: v for k, v in session.items() if k != "mcp-session-id"}),
        mcp_sent(walk, "a garbage version", ping(walk), {**session, "mcp-protocol-version": "9999-99-99"}),
        mcp_sent(walk, "malformed JSON", ping(walk), raw=b'{"jsonrpc": "2.0", "id": 7, "method": "pi'),
        mcp_sent(walk, "a list", ping(walk), raw=b"[1, 2, 3]"),
        mcp_sent(walk, "a string", ping(walk), raw=b'"ping"'),
        mcp_sent(walk, "empty", ping(walk), raw=b""),
        mcp_sent(walk, "invalid UTF-8", ping(walk), raw=b'{"jsonrpc": "2.0", "id": 7, "method": "\xff\xfe"}'),
        mcp_sent(walk, "10,000 levels deep", ping(walk), raw=deep_json(ping(walk), ("params",), 10_000)),
        mcp_sent(walk, "an unknown method", ping(walk, method="\u0000../../etc")),
        mcp_sent(walk, "a 1 MB id", ping(walk, id="i" * MB)),
        mcp_sent(walk, "no jsonrpc", {"id": next(walk.ids), "method": "ping"}),
        mcp_sent(walk, "a JSON-RPC batch", [ping(walk), ping(walk)]),
        mcp_sent(walk, "tools/call with params a string", ping(walk, method="tools/call", params="x")),
        mcp_sent(walk, "tools/call without a name", ping(walk, method="tools/call", params={"arguments": None})),
    ]


def tool_name_cases(walk: Walk) -> list[Sent]:
    return [
        mcp_sent(walk, f"a tool named {label}", tool_call(next(walk.ids), name, {}))
        for label, name in [("a traversal", TRAVERSAL), ("garbage", GARBAGE), ("a number", 5), ("1 MB", "t" * MB)]
    ]


def transport_plain_cases(walk: Walk) -> list[Sent]:
    """What the MCP SDK's Streamable HTTP transport refuses before any JSON-RPC, in plain text (or not at all)."""
    return [
        mcp_sent(walk, "a foreign Host", ping(walk), {**walk.session, "Host": "evil.example"}),
        mcp_sent(walk, "a foreign Origin", ping(walk), {**walk.session, "Origin": "http://evil.example"}),
        mcp_sent(walk, "text/plain", ping(walk), {**walk.session, "Content-Type": "text/plain"}),
        mcp_sent(walk, "an id of 1e308", ping(walk, id=1e308)),
        mcp_sent(walk, "an object id", ping(walk, id={"a": [1]})),
        mcp_sent(walk, "a 5 MB prompt", tool_call(next(walk.ids), "ask", {"prompt": "x" * 5 * MB})),
    ]


def duplicate_id_cases(walk: Walk) -> list[Sent]:
    """Two requests in flight with one id (a client's error): each must still be answered, if by a refusal."""
    request_id = next(walk.ids)
    pair = [mcp_sent(walk, f"ping {n} of 2 with one id", ping(walk, id=request_id)) for n in (1, 2)]
    return [replace(sent, within_s=3) for sent in pair]


def base_arguments(walk: Walk, tool: str) -> dict[str, Any]:
    """Valid values of `tool`'s required arguments (ids that exist; for a destructive tool, ids that do
    not), each hostile value replacing one of them or added beside them."""
    spec = next(spec for spec in TOOLS if spec.name == tool)
    destructive = bool(spec.annotations and spec.annotations.destructive_hint)
    unknown = "00000000-0000-4000-8000-000000000000"
    values = {
        "prompt": WALKED,
        "session_id": unknown if destructive else walk.existing["session_id"],
        "job_id": unknown if destructive else walk.existing["job_id"],
        "agent": AGENT["agent"],
    }
    required = [name for name, info in spec.args.model_fields.items() if info.is_required()]
    assert set(required) <= set(values), f"{tool}: give the walk a valid value of {set(required) - set(values)}"
    arguments = {name: values[name] for name in required}
    return {**arguments, "agents": AGENT["agents"]} if "agent" in arguments else arguments


def tool_wide_cases(walk: Walk, tool: str) -> list[Sent]:
    """What any tool may be sent whatever its fields: bad arguments as a whole, and no credentials."""
    base = base_arguments(walk, tool)
    schema = next(spec for spec in TOOLS if spec.name == tool).args.model_json_schema()
    defs = schema.get("$defs", {})
    strings = [name for name, prop in schema.get("properties", {}).items() if "string" in kinds(prop, defs)]
    first = strings[0] if strings else "unknown_field"
    cases = [
        ("arguments a list", tool_call(next(walk.ids), tool, [1, 2])),
        ("arguments a string", tool_call(next(walk.ids), tool, "x")),
        ("an unknown argument", tool_call(next(walk.ids), tool, {**base, "\u0000unknown": GARBAGE})),
        (f"{first} of 3 MB", tool_call(next(walk.ids), tool, {**base, first: "x" * 3 * MB})),
    ]
    sent = [mcp_sent(walk, label, message) for label, message in cases]
    call = tool_call(next(walk.ids), tool, base)
    sent += [
        mcp_sent(walk, "malformed JSON", call, raw=encoded(call)[:-5]),
        mcp_sent(walk, "10,000 levels deep", call, raw=deep_json(call, ("params", "arguments", first), 10_000)),
        mcp_sent(walk, "a NaN literal", call, raw=raw_at(call, ("params", "arguments", first), b"NaN")),
        mcp_sent(walk, "no token", call, {k: v for k, v in walk.session.items() if k != "Authorization"}),
    ]
    return sent


def tool_field_cases(walk: Walk, tool: str, name: str) -> list[Sent]:
    spec = next(spec for spec in TOOLS if spec.name == tool)
    schema = spec.args.model_json_schema()
    base = base_arguments(walk, tool)
    values = hostile_values(schema["properties"][name], schema.get("$defs", {}))
    if "string" in kinds(schema["properties"][name], schema.get("$defs", {})):
        values.append(("1.5 MB", "x" * 1_500_000))  # over the prompt's limit, under the transport's 4 MiB
    return [mcp_sent(walk, label, tool_call(next(walk.ids), tool, {**base, name: value})) for label, value in values]


MANY = {"array": (1_000_000,), "object": (4_000, 200_000)}
"""How many items of the wrong type a list or object argument is given: a million list items (2 MB), and
objects of 4,000 keys (52 KB, within every argument's size limit) and 200,000 keys (2.6 MB)."""


def tool_many_items_cases(walk: Walk, tool: str, names: list[str]) -> list[Sent]:
    schema = next(spec for spec in TOOLS if spec.name == tool).args.model_json_schema()
    defs = schema.get("$defs", {})
    base = base_arguments(walk, tool)

    def sent(name: str, kind: str, count: int) -> Sent:
        message = tool_call(next(walk.ids), tool, {**base, name: "__raw__"})
        raw = encoded(message).replace(b'"__raw__"', many_items_json(kind, count))
        return mcp_sent(walk, f"{name}: {count:,} items", message, raw=raw)

    return [
        sent(name, kind, count)
        for name in names
        for kind in ("array", "object")
        if kind in kinds(schema["properties"][name], defs)
        for count in MANY[kind]
    ]


def mcp_cases() -> list[tuple[str, Case]]:
    cases: list[tuple[str, Case]] = [
        ("transport", transport_cases),
        ("transport refusals in plain text", transport_plain_cases),
        ("tool names", tool_name_cases),
        ("duplicate ids", duplicate_id_cases),
    ]
    walked: set[tuple[type, str]] = set()
    for spec in TOOLS:
        t = spec.name
        cases.append((f"{t} arguments", of_walk(tool_wide_cases, t)))
        schema = spec.args.model_json_schema()
        defs = schema.get("$defs", {})
        fields: list[str] = []
        for n in spec.args.model_fields:
            declared_by = next(m for m in reversed(spec.args.__mro__) if n in getattr(m, "model_fields", {}))
            if (declared_by, n) not in walked:  # a field of a model many tools' arguments extend: walked once
                walked.add((declared_by, n))
                fields.append(n)
        cases += [(f"{t} {n}", of_walk(tool_field_cases, t, n)) for n in fields]
        if many := [n for n in fields if {"array", "object"} & set(kinds(schema["properties"][n], defs))]:
            cases.append((f"{t} many items", of_walk(tool_many_items_cases, t, many)))
    return cases


CASES = [(f"HTTP {name}", case) for name, case in http_cases()] + [(f"MCP {name}", case) for name, case in mcp_cases()]
"""Among them, what found defects when the walk was first run, each a plain case now: a NUL in a system prompt
(`HTTP POST /v1/messages system`, the system message of `/v1/chat/completions`: it reached the CLI's command
line, a 500), lone surrogates in a prompt (`… messages.0.content`: a 500, the store refused them), a body of
very many wrong-typed items (`… many items`: /healthz stalled seconds, RSS +~1 GB), the MCP transport's
plain-text refusals (`MCP transport refusals in plain text`) and two requests in flight with one id
(`MCP duplicate ids`: one never answered)."""


@pytest.mark.parametrize("case", [pytest.param(case, id=name) for name, case in CASES])
async def test_every_route_and_tool_refuses_hostile_input_in_its_shape(walk: Walk, case: Case) -> None:
    problems = await sent_all(walk, case(walk))
    assert not problems, "\n".join(problems)


# --- what the walk found, each held on its own ---------------------------------------------------------------


def test_a_lone_surrogate_or_a_nul_in_a_system_prompt_is_refused_before_any_run() -> None:
    """The one check every surface's prompts pass (`InputLimits`), the Python API's included."""
    limits = Policy().input_limits
    for check, text, name in [
        (limits.prompt, "walk \ud800 on", "prompt"),
        (limits.system_prompt, "\udfff", "system_prompt"),
        (limits.system_prompt, "be\u0000brief", "system_prompt"),
    ]:
        with pytest.raises(UnfitText) as refused:
            check(text)
        assert refused.value.field == name and refused.value.kind == "invalid_arguments"
    limits.prompt("a NUL\u0000 in a prompt travels as JSON, and a pair \U0001f4a5 is one character")


async def test_unfit_text_is_a_400_or_an_is_error_naming_where(walk: Walk) -> None:
    """A NUL in a system prompt (it went to the CLI's command line: a 500) and a lone surrogate anywhere
    in a body (the store refused it: a 500) are refused up front, in each protocol's shape."""
    nul_system = {**MESSAGES, "system": "Be\u0000brief."}
    chat_nul = {**CHAT, "messages": [{"role": "system", "content": "Be\u0000brief."}, CHAT["messages"][1]]}
    surrogate = encoded(MESSAGES).replace(WALKED.encode(), b"walk \\ud800 on")
    async with httpx2.AsyncClient(timeout=30, base_url=walk.base) as http:
        for path, body, shape, words in [
            ("/v1/messages", encoded(nul_system), "anthropic", "system holds a NUL"),
            ("/v1/chat/completions", encoded(chat_nul), "openai", "messages holds a NUL"),
            ("/v1/messages", surrogate, "anthropic", "'messages.0.content' holds a lone surrogate"),
            ("/v1/chat/completions", encoded(CHAT).replace(b"Walk.", b"\\udc00"), "openai", "lone surrogate"),
        ]:
            response = await http.post(path, content=body, headers={**KEY, **JSON})
            assert response.status_code == 400, (path, response.text)
            assert not api_problems(shape, Answer(400, response.headers["content-type"], response.text))
            assert words in response.json()["error"]["message"], response.text
        call = tool_call(next(walk.ids), "ask", {"prompt": WALKED, "system_prompt": "Be\u0000brief."})
        response = await http.post(MCP_PATH, json=call, headers=walk.session)
    result = [data for _, data in sse_events(response.text) if isinstance(data, dict) and "result" in data][-1]
    assert result["result"]["isError"], result
    assert "system_prompt holds a NUL" in result["result"]["content"][0]["text"]


def test_a_requests_id_is_read_from_the_start_of_its_body_or_else_from_the_whole() -> None:
    """The guard reads a request's id from the first 64 KiB of its body, where clients write it; an id
    written after its params, or cut short where the 64 KiB end, is read from the whole body."""
    big = {"arguments": {"allowed_tools": [0] * 100_000}}
    assert request_id_in(encoded({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": big})) == (5,)
    assert request_id_in(encoded({"params": big, "jsonrpc": "2.0", "id": "x7", "method": "tools/call"})) == ("x7",)
    head = b'{"jsonrpc":"2.0","method":"ping","pad":"'
    cut = head + b"a" * (PREFIX_BYTES - len(head) - len(b'","id":1234')) + b'","id":123456789}'
    assert cut[:PREFIX_BYTES].endswith(b'"id":1234')  # the prefix ends inside the id
    assert request_id_in(cut) == (123456789,)
    assert request_id_in(encoded({"jsonrpc": "2.0", "id": 1.5, "method": "ping"})) == (1.5,)
    for not_a_request in ({"jsonrpc": "2.0", "method": "notifications/initialized"}, {"id": 3, "result": {}}, [1]):
        assert request_id_in(encoded(not_a_request)) is None
    assert request_id_in(b'{"id": 1, "method": "pi') is None


async def test_the_mcp_transports_refusals_are_json_rpc_errors(walk: Walk) -> None:
    """The transport's plain-text refusals (Host, Origin, Content-Type, a body over its cap) keep their status
    and carry a JSON-RPC error; a request whose id is a float or an object is refused, not taken for a
    notification (202, never answered)."""
    cases = [
        ({"Host": "evil.example"}, ping(walk), 421),
        ({"Origin": "http://evil.example"}, ping(walk), 403),
        ({"Content-Type": "text/plain"}, ping(walk), 400),
        ({}, ping(walk, id=1.5), 400),
        ({}, ping(walk, id={"a": [1]}), 400),
        ({}, ping(walk, id=None), 400),
        ({}, tool_call(next(walk.ids), "ask", {"prompt": "x" * 5 * MB}), 413),
    ]
    async with httpx2.AsyncClient(timeout=30) as http:
        for headers, message, status in cases:
            response = await http.post(walk.server.url, content=encoded(message), headers={**walk.session, **headers})
            assert response.status_code == status, (headers, response.text[:200])
            error = response.json()
            assert error["jsonrpc"] == "2.0" and error["id"] is None and error["error"]["code"] == -32600, error
            assert error["error"]["message"], error


async def test_a_request_whose_id_is_in_flight_is_refused_and_the_first_is_answered(walk: Walk) -> None:
    """Two requests in flight in one session with one id: the transport keys its answers by id, so one was
    never answered; the second is refused at once (naming the id), the first answered as usual."""
    request_id = next(walk.ids)
    slow = tool_call(request_id, "ask", {"prompt": "[[slow:200]] one two three four five"})
    async with httpx2.AsyncClient(timeout=60) as http:
        with anyio.fail_after(60):
            async with http.stream("POST", walk.server.url, json=slow, headers=walk.session) as first:
                assert first.status_code == 200  # its answer has begun: the request is in flight
                again = await http.post(walk.server.url, json=ping(walk, id=request_id), headers=walk.session)
                text = (await first.aread()).decode()
    assert again.status_code == 400, again.text
    assert again.json()["id"] == request_id and "already in use" in again.json()["error"]["message"]
    answer = [data for _, data in sse_events(text) if isinstance(data, dict) and data.get("id") == request_id][-1]
    assert answer["result"]["structuredContent"]["result"] == "Echo: one two three four five", answer


# --- slow clients ------------------------------------------------------------------------------------------


async def trickled(walk: Walk, sent: Sent, *, for_s: float, finish: bool) -> Answer | None:
    """Send `sent` with its body trickled over `for_s` seconds (a few bytes at a time); its answer, or
    None if the client gives up before the body ends (`finish` False)."""
    assert isinstance(sent.body, bytes)
    parts = urlsplit(walk.base)
    head = [f"{sent.method} {sent.path} HTTP/1.1", f"Host: {parts.netloc}", f"Content-Length: {len(sent.body)}",
            *(f"{k}: {v}" for k, v in sent.headers.items())]  # fmt: skip
    async with await anyio.connect_tcp(parts.hostname or "127.0.0.1", parts.port or 80) as stream:
        await stream.send(("\r\n".join(head) + "\r\n\r\n").encode())
        steps = 20
        piece = -(-len(sent.body) // steps)
        sent_bytes = sent.body if finish else sent.body[: len(sent.body) // 2]
        for start in range(0, len(sent_bytes), piece):
            await stream.send(sent_bytes[start : start + piece])
            await anyio.sleep(for_s / steps)
        if not finish:
            return None
        with anyio.fail_after(30):
            return await raw_answer(stream)


async def test_slow_bodies_are_answered_in_shape_and_hold_nobody_else(walk: Walk) -> None:
    """A client per body-taking route (and `/mcp`) trickles a body of wrong types over ~2.5 s, another
    gives up halfway: the finished ones get their refusal in shape, and `/healthz` answers throughout."""
    wrong = encoded({"model": 7, "max_tokens": "many", "messages": {"role": "robot"}})
    slow = [
        Sent(str(e), e.method, e.path(), e.shape, {**KEY, **JSON}, wrong)
        for e in ENDPOINTS
        if e.takes_body and e.shape != "open"
    ]
    rpc_call = tool_call(next(walk.ids), "ask", {"prompt": 5, "max_turns": "NaN"})
    slow.append(Sent("/mcp", "POST", MCP_PATH, "mcp", walk.session, encoded(rpc_call), rpc_call["id"], True))
    problems: list[str] = []
    start = time.monotonic()

    async def finished(sent: Sent) -> None:
        answer = await trickled(walk, sent, for_s=2.5, finish=True)
        assert answer is not None
        walk.walked += 1
        found = (
            mcp_problems(answer, sent.rpc_id, sent.tool_call)
            if sent.shape == "mcp"
            else api_problems(sent.shape, answer)
        )
        if not 400 <= answer.status < 500 and sent.shape != "mcp":
            found.append(f"status {answer.status}: {answer.text[:200]}")
        problems.extend(f"slow {sent.label}: {p}" for p in found)

    async def abandoned(sent: Sent) -> None:
        await trickled(walk, sent, for_s=1.5, finish=False)
        walk.walked += 1

    async with anyio.create_task_group() as tasks:
        for sent in slow:
            tasks.start_soon(finished, sent)
            tasks.start_soon(abandoned, sent)
    problems += walk.health_problems(start)
    assert not problems, "\n".join(problems)
    assert len(walk.watch.since(start)) >= 15  # /healthz was asked all along, not once at the end


# --- the figures -------------------------------------------------------------------------------------------


def test_the_server_stayed_bounded_and_answering_throughout(walk: Walk) -> None:
    """Last: over the whole walk, /healthz answered every poll within a second, the server's RSS stayed
    within its bound, it held no more CLIs than its limits allow, its log holds no ERROR (an internal error
    is a defect, whatever the answer said), and no CLI of the walk runs outside its process tree. The
    figures are printed (`-s`) for the README."""
    samples = walk.watch.samples
    worst = max(s.healthz_s for s in samples)
    peak_own = max(s.own_rss_mb for s in samples)
    print(
        f"\nhostile walk: {walk.walked} inputs, {len(samples)} /healthz polls, worst {worst * 1000:.0f} ms; "
        f"the server's RSS idle {walk.idle_own_mb:.0f} MB, peak {peak_own:.0f} MB "
        f"(+{peak_own - walk.idle_own_mb:.0f}, bound {walk.rss_bound_mb:.0f}); "
        f"CLIs held at most {max(s.clis for s in samples)} (bound {MOST_CLIS}); "
        f"at the RSS peak: {walk.in_flight(max(samples, key=lambda s: s.own_rss_mb))[:4]}; "
        f"at the slowest /healthz: {walk.in_flight(max(samples, key=lambda s: s.healthz_s))[:4]}"
    )
    assert len(samples) > 50
    problems = walk.health_problems(0)
    assert not problems, "\n".join(problems)
    assert walk.walked > 500
    log = (walk.directory / "server-walk.log").read_text()
    errors = [line for line in log.splitlines() if " ERROR " in line or line.startswith("Traceback")]
    assert not errors, f"no input is an internal error, nor a traceback in the log at its default level: {errors}"
    held = {p.pid for p in psutil.Process(walk.server.process.pid).children(recursive=True)}
    strays = [p.cmdline()[:2] for p in walk_clis(walk.directory) if p.pid not in held]
    assert not strays, f"CLIs of the walk outside the server's process tree: {strays}"
