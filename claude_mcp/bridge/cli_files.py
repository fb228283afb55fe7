"""What is too large for a command line goes to the CLI in a file.

claude-agent-sdk passes the system prompt (`--system-prompt`, `--append-system-prompt`) and our
agents (`--agents`) on the CLI's command line, where Linux allows one argument at most 128 KiB
(and all of them ~2 MiB): a larger one fails the start with "[Errno 7] Argument list too long".
The CLI reads each of them from a file too (`--system-prompt-file`,
`--append-system-prompt-file`, `--agents <file>`), so `spill` moves those over `INLINE_BYTES`
into files of their own: in a private directory (0700, files 0600) under the CLI's own config
dir — the one directory of its namespace a sandboxed CLI is sure to see (`walls`) — removed once
the CLI has read them (it has started) or the process closes, whichever comes first. What else
reaches the command line is bounded where it is accepted (`config.limits`: `json_schema`, a
call's `mcp_servers`; the caller's own tools are allowed by one rule, `client_tools`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from claude_agent_sdk import ClaudeAgentOptions
from claude_agent_sdk.types import SystemPromptFile, SystemPromptPreset

from ..state.sticky import config_dir

INLINE_BYTES = 16 * 1024
"""A value up to this size stays on the command line (as before); a larger one goes to a file."""
DIR_NAME = "claude-mcp-inputs"
"""Under the CLI's config dir: a directory per CLI process that needed files."""
STALE_S = 86_400
"""A process's directory left this long (its server was killed while the CLI started) is removed."""


@dataclass
class CliFiles:
    """The files one CLI process is given; `remove` deletes them (any number of times)."""

    directory: Path | None = None
    _fd: int | None = field(default=None, repr=False)
    """The directory, open while `spill` writes into it: written through it, not by path, so that
    nothing a sandboxed CLI plants in its config dir (a symlink) sends the server's writes elsewhere."""

    def write(self, name: str, text: str) -> str:
        """`text` in a new private file named `name`; its path."""
        assert self.directory is not None and self._fd is not None
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        with os.fdopen(os.open(name, flags, 0o600, dir_fd=self._fd), "w", encoding="utf-8") as file:
            file.write(text)
        return str(self.directory / name)

    def written(self) -> None:
        """Every file is written: the directory is let go."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def remove(self) -> None:
        self.written()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)  # a name only this process's CLI knows
            self.directory = None


def _large(text: str | None) -> bool:
    return text is not None and (len(text) > INLINE_BYTES or len(text.encode("utf-8", "surrogatepass")) > INLINE_BYTES)


def _inline_prompt(options: ClaudeAgentOptions) -> str | None:
    """The system prompt text the SDK would put on the command line (a custom one, or a preset's append)."""
    prompt = options.system_prompt
    if isinstance(prompt, dict) and prompt["type"] == "custom":
        return prompt["prompt"]
    if isinstance(prompt, dict) and prompt["type"] == "preset":
        return prompt.get("append")
    return None


def _needs_files(options: ClaudeAgentOptions) -> bool:
    inline = [_inline_prompt(options), options.extra_args.get("append-system-prompt"), options.extra_args.get("agents")]
    return any(_large(text) for text in inline)


OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


def _inputs_dir(path: Path) -> int:
    """`path` (`DIR_NAME` in a config dir) opened, made if missing; whatever else stands there (a
    symlink a sandboxed CLI put in its place) is replaced by a directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    try:
        return os.open(path, OPEN_DIR)
    except OSError:
        path.unlink()  # not a directory: a link or a file, removed itself (never what it points at)
        path.mkdir(mode=0o700)
        return os.open(path, OPEN_DIR)


def _private_dir(options: ClaudeAgentOptions, files: CliFiles) -> None:
    """A new directory of this process's own in the CLI's config dir, open in `files`."""
    path = config_dir(options.env) / DIR_NAME
    parent = _inputs_dir(path)
    try:
        _forget_stale(parent)
        name = uuid.uuid4().hex
        os.mkdir(name, 0o700, dir_fd=parent)
        files._fd = os.open(name, OPEN_DIR, dir_fd=parent)
        files.directory = path / name
    finally:
        os.close(parent)


def _forget_stale(parent: int) -> None:
    cutoff = time.time() - STALE_S
    with contextlib.suppress(OSError), os.scandir(parent) as entries:
        for entry in entries:
            with contextlib.suppress(OSError):
                if entry.stat(follow_symlinks=False).st_mtime >= cutoff:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.name, dir_fd=parent, ignore_errors=True)
                else:
                    os.unlink(entry.name, dir_fd=parent)


def spill(options: ClaudeAgentOptions) -> CliFiles:
    """Move the options' large system prompt, appended system prompt and agents into files, and
    point the options at them; the files, to remove once the CLI has read them. Call it before
    the options' `CLAUDE_CONFIG_DIR` is changed for a sandbox (`walls`)."""
    files = CliFiles()
    if not _needs_files(options):
        return files
    _private_dir(options, files)
    extra = dict(options.extra_args)
    prompt, text = options.system_prompt, _inline_prompt(options)
    if isinstance(prompt, dict) and text is not None and _large(text):
        if prompt["type"] == "custom":
            if prompt.get("snapshot") is False:  # the SDK passes it only for its own
                extra["system-prompt-snapshot"] = "off"
            options.system_prompt = SystemPromptFile(type="file", path=files.write("system-prompt.txt", text))
        else:
            options.system_prompt = cast(SystemPromptPreset, {k: v for k, v in prompt.items() if k != "append"})
            extra["append-system-prompt-file"] = files.write("append-system-prompt.txt", text)
    if (text := extra.get("append-system-prompt")) is not None and _large(text):
        del extra["append-system-prompt"]
        extra["append-system-prompt-file"] = files.write("append-system-prompt.txt", text)
    if (text := extra.get("agents")) is not None and _large(text):
        extra["agents"] = files.write("agents.json", text)
    options.extra_args = extra
    files.written()
    return files
