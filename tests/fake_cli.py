#!/usr/bin/env python3
"""A stand-in for the `claude` CLI that fails in ways the real one can't be made to.

It speaks just enough of the stream-json control protocol for claude-agent-sdk to connect,
then, on the first prompt, behaves as `FAKE_CLI_MODE` says:

- `crash`:   start answering, then exit with status 3 (dies mid-stream);
- `garbage`: start answering, then print a corrupt JSON line;
- `hang`:    start answering, then never say anything again (stays alive);
- `silent_exit`: exit 0 without a result.

Each start is logged by appending this process's pid to `$FAKE_CLI_PIDS` if set.
"""

import json
import os
import sys
import time
import uuid
from pathlib import Path


def emit(frame: dict) -> None:
    sys.stdout.write(json.dumps(frame) + "\n")
    sys.stdout.flush()


def main() -> None:
    if pids := os.environ.get("FAKE_CLI_PIDS"):
        with Path(pids).open("a") as log:
            log.write(f"{os.getpid()}\n")
    mode = os.environ.get("FAKE_CLI_MODE", "crash")
    session_id = str(uuid.uuid4())
    for line in sys.stdin:
        message = json.loads(line)
        if message.get("type") == "control_request":
            emit(
                {
                    "type": "control_response",
                    "response": {"subtype": "success", "request_id": message["request_id"], "response": {}},
                }
            )
            continue
        if message.get("type") != "user":
            continue
        emit({"type": "system", "subtype": "init", "session_id": session_id, "tools": [], "model": "fake"})
        emit(
            {
                "type": "assistant",
                "session_id": session_id,
                "parent_tool_use_id": None,
                "message": {"role": "assistant", "model": "fake", "content": [{"type": "text", "text": "Partial"}]},
            }
        )
        if mode == "crash":
            sys.stderr.write("fake cli: simulated crash\n")
            sys.stderr.flush()
            os._exit(3)
        if mode == "garbage":
            sys.stdout.write('{"type": "assistant", "message": {not json\n')
            sys.stdout.flush()
            time.sleep(30)
        if mode == "hang":
            time.sleep(3600)
        if mode == "silent_exit":
            os._exit(0)


if __name__ == "__main__":
    main()
