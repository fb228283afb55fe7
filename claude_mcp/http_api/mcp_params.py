"""The shape of a request's `mcp_servers` (the Messages API's MCP connector); `mcp_connector`
hands them to the run."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from ..config.specs import ServerName

MOST_SERVERS = 20


class ToolConfiguration(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    allowed_tools: list[ServerName] | None = Field(None, max_length=200)


class McpServerParam(BaseModel):
    """One of a request's `mcp_servers`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str = "url"
    url: str = Field(..., max_length=4096)
    name: ServerName
    authorization_token: str | None = Field(None, max_length=8192)
    tool_configuration: ToolConfiguration | None = None

    def __repr__(self) -> str:  # the token stays out of every log line and traceback
        return f"McpServerParam(name={self.name!r}, url={self.url!r})"

    __str__ = __repr__
