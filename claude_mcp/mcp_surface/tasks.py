"""The MCP Tasks extension (`io.modelcontextprotocol/tasks`, SEP-2663) over the job engine.

A client that declares the extension on a `tools/call` of a task-capable tool (`ask`,
`stream_ask`, `fork_session` with a prompt, `run_agent`) gets a task handle at once
(`resultType: "task"`) instead of waiting: the run is queued as a job in the store and claimed
by whichever replica has a free run slot. The client then polls `tasks/get` (the status; the
tool's own result once completed; the permission question while `input_required`), answers
that question with `tasks/update`, and stops the run with `tasks/cancel` — from any connection
and any replica, until the task's TTL (the job's retention). A task id is the job id, so
`get_job` / `list_jobs` / `cancel_job` read the same records.

Built on the `mcp` SDK's extension API: `TasksExtension` contributes the three methods and
intercepts `tools/call`; `build_server` applies it to the low-level server.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from datetime import UTC, datetime
from typing import Any, Literal

import mcp_types as types
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.extension import Extension, MethodBinding
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from ..bridge.jobs import JobNotFound
from ..bridge.permissions import ELICITATION_SCHEMA
from ..config.limits import InputLimits
from ..config.policy import Policy
from ..errors import ClaudeMCPError, InvalidArguments
from ..state.store import JobRecord
from ..telemetry import metrics
from .arguments import validated
from .call import Call, answer_of, error_result, tool_result
from .tools.spec import ToolSpec

logger = logging.getLogger(__name__)

TASKS = "io.modelcontextprotocol/tasks"
TaskStatus = Literal["working", "input_required", "completed", "failed", "cancelled"]
Calling = Callable[[ServerRequestContext[Any, Any]], AbstractAsyncContextManager[Call]]
"""Resolves a request's tenant, credential and bridge (see `server.build_server`)."""
CANCEL_WAIT_S = 2.0
"""How long `tasks/cancel` waits for the run to stop before it answers (the stop goes on after)."""


class TaskParams(types.RequestParams):
    """`tasks/get` and `tasks/cancel`."""

    model_config = ConfigDict(populate_by_name=True)

    task_id: str = Field(alias="taskId", min_length=1, max_length=200)


class UpdateTaskParams(TaskParams):
    """`tasks/update`: answers keyed as `tasks/get` listed the questions."""

    input_responses: dict[str, Any] = Field(alias="inputResponses")


class Task(BaseModel):
    """A task as SEP-2663 shows it (dumped by alias: camelCase)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    task_id: str
    status: TaskStatus
    created_at: str
    last_updated_at: str
    ttl_ms: int
    poll_interval_ms: int
    status_message: str | None = None


class CreatedTask(Task):
    """The answer to a task-augmented `tools/call`."""

    result_type: Literal["task"] = "task"


class DetailedTask(Task):
    """The answer to `tasks/get`: the task, with its result, error or questions."""

    result_type: Literal["complete"] = "complete"
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    input_requests: dict[str, Any] | None = None


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, tz=UTC).isoformat()


def wire(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def _fields(record: JobRecord, status: TaskStatus, policy: Policy, message: str | None = None) -> dict[str, Any]:
    return {
        "task_id": record.job_id,
        "status": status,
        "created_at": _iso(record.created_at),
        "last_updated_at": _iso(record.updated_at),
        "ttl_ms": int(policy.job_retention_s * 1000),
        "poll_interval_ms": int(policy.task_poll_interval_s * 1000),
        "status_message": message,
    }


def declared(ctx: ServerRequestContext[Any, Any]) -> bool:
    """Whether this request's client declared the Tasks extension (the 2026-07-28 era only)."""
    if ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
        return False
    capabilities = ctx.session.client_capabilities
    extensions = capabilities.extensions if capabilities is not None else None
    return extensions is not None and TASKS in extensions


def not_found(task_id: str) -> MCPError:
    # The same words whether it never existed, expired, or belongs to someone else.
    return MCPError(code=types.INVALID_PARAMS, message=f"Task {task_id} not found")


class TasksExtension(Extension):
    """Tasks over the job engine: task-augmented tool calls, `tasks/get|update|cancel`."""

    identifier = TASKS

    def __init__(self, tools: Mapping[str, ToolSpec], calling: Calling, limits: InputLimits) -> None:
        self.specs = tools
        self.calling = calling
        self.limits = limits

    def methods(self) -> Sequence[MethodBinding]:
        versions = frozenset(MODERN_PROTOCOL_VERSIONS)
        return [
            MethodBinding("tasks/get", TaskParams, self._get, versions),
            MethodBinding("tasks/update", UpdateTaskParams, self._update, versions),
            MethodBinding("tasks/cancel", TaskParams, self._cancel, versions),
        ]

    async def intercept_tool_call(
        self, params: types.CallToolRequestParams, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        spec = self.specs.get(params.name)
        if spec is None or spec.task is None or not declared(ctx):
            return await call_next(ctx)
        try:
            args = await validated(spec.args, params.arguments or {}, self.limits)
        except (ValidationError, ClaudeMCPError):
            return await call_next(ctx)  # the plain call says what is wrong with them
        try:
            async with self.calling(ctx) as call:
                record = await spec.task.submit(args, call)
                policy = call.bridge.policy
        except ClaudeMCPError as exc:
            metrics.TOOL_CALLS.labels(spec.name, exc.kind).inc()
            return error_result(str(exc), exc.structured)
        except Exception:
            logger.exception("%s could not start as a task", spec.name)
            return error_result(f"{spec.name} failed because of an internal error; the server log has details.")
        if record is None:
            return await call_next(ctx)
        metrics.TOOL_CALLS.labels(spec.name, "task").inc()
        logger.info("%s: started as task %s", spec.name, record.job_id)
        return wire(CreatedTask(**_fields(record, "working", policy)))

    # The methods.
    async def _get(self, ctx: ServerRequestContext[Any, Any], params: TaskParams) -> HandlerResult:
        async with self._owning(ctx, params.task_id) as call:
            record = await call.bridge.jobs.record(call.owner, params.task_id)
        return wire(self._detailed(record, call.bridge.policy))

    async def _update(self, ctx: ServerRequestContext[Any, Any], params: UpdateTaskParams) -> HandlerResult:
        async with self._owning(ctx, params.task_id) as call:
            for key, response in params.input_responses.items():
                try:
                    answer = answer_of(types.ElicitResult.model_validate(response))
                except ValidationError:
                    raise MCPError(
                        code=types.INVALID_PARAMS, message=f"inputResponses[{key!r}] is not an elicitation result"
                    ) from None
                with suppress(InvalidArguments):  # not pending (answered, or never asked): a repeat is a no-op
                    await call.bridge.jobs.answer(call.owner, params.task_id, key, answer)
        return {}

    async def _cancel(self, ctx: ServerRequestContext[Any, Any], params: TaskParams) -> HandlerResult:
        async with self._owning(ctx, params.task_id) as call:
            await call.bridge.jobs.cancel(call.owner, params.task_id, wait_s=CANCEL_WAIT_S)
        return {}

    @asynccontextmanager
    async def _owning(self, ctx: ServerRequestContext[Any, Any], task_id: str) -> AsyncIterator[Call]:
        """The call (its tenant, credential and bridge), for a client that declared the extension;
        a task that is not the caller's, or a refusal, is the method's error (never a traceback)."""
        if ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            raise MCPError(code=types.METHOD_NOT_FOUND, message="Method not found")  # as the SDK gates by version
        if not declared(ctx):
            raise MCPError(
                code=types.MISSING_REQUIRED_CLIENT_CAPABILITY,
                message=f"This request needs the {TASKS} extension; declare it in the request's client capabilities.",
                data={"requiredCapabilities": {"extensions": {TASKS: {}}}},
            )
        try:
            async with self.calling(ctx) as call:
                yield call
        except JobNotFound:
            raise not_found(task_id) from None
        except ClaudeMCPError as exc:
            raise MCPError(code=types.INVALID_PARAMS, message=str(exc)) from None

    # Jobs as tasks.
    def _detailed(self, record: JobRecord, policy: Policy) -> DetailedTask:
        latest = record.progress[-1] if record.progress else None
        if record.status in ("queued", "running"):
            if (pending := record.pending_permission) is not None:
                question = types.ElicitRequest(
                    params=types.ElicitRequestFormParams(
                        message=f"Claude wants to: {pending.get('description')}", requested_schema=ELICITATION_SCHEMA
                    )
                )
                requests = {str(pending["permission_id"]): wire(question)}
                return DetailedTask(**_fields(record, "input_required", policy, latest), input_requests=requests)
            return DetailedTask(**_fields(record, "working", policy, "queued" if record.status == "queued" else latest))
        if record.status == "cancelled":
            return DetailedTask(**_fields(record, "cancelled", policy, record.error))
        spec = self.specs.get(record.tool or "")
        if record.status == "completed" and spec is not None and spec.task is not None:
            return DetailedTask(
                **_fields(record, "completed", policy), result=wire(tool_result(spec.task.result(record)))
            )
        if record.result is not None and spec is not None and spec.task is not None:
            # The run ended with an error result: the tool's own error result, as a plain call gets it.
            failed = error_result(record.error or "The run failed.", spec.task.result(record))
            return DetailedTask(**_fields(record, "completed", policy, record.error), result=wire(failed))
        error = {"code": types.INTERNAL_ERROR, "message": record.error or "The run failed."}
        error["data"] = {"session_id": record.session_id} if record.session_id else {}
        return DetailedTask(**_fields(record, "failed", policy, record.error), error=error)
