"""A node in its own OS process, driven by JSON lines: one line per command on the
child's stdin, one line per answer on its stdout (the first line out is
``{"ready": true, "id": ..., "address": ...}``), its stderr in ``<tmp>/<name>.log``.
``ChildProcess`` is the test's side, ``serve`` the child's.

Shared by ``test_net_processes.Child`` (tests/net_child_node.py, also test_load,
test_netns, test_ws_relay) and ``device_child_node.Proc`` (test_devices,
test_pairing_attacks). Every wait is bounded.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any


class ChildProcess:
    """``child(op, **kw)`` sends one command and returns the child's answer.

    Subclasses give :meth:`command` (the argv that starts the child). Answers holding
    ``"error"`` fail the test, except for the ops in ``errors_allowed``.
    """

    errors_allowed: tuple[str, ...] = ()
    wait_text_timeout = 15.0

    def __init__(self, tmp: Path, name: str) -> None:
        self.tmp, self.name = tmp, name

    def command(self, *extra: str) -> list[str]:
        raise NotImplementedError

    def start(self, *extra: str) -> ChildProcess:
        self.log = open(self.tmp / f"{self.name}.log", "ab")  # noqa: SIM115 (closed in stop/kill)
        self.proc = subprocess.Popen(self.command(*extra), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log, text=True,
                                     bufsize=1)
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._reader, daemon=True).start()
        info = self._read(30.0)
        assert info.get("ready"), info
        self.id, self.address = info["id"], info["address"]
        return self

    def _reader(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _read(self, timeout: float) -> dict[str, Any]:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"{self.name}: no answer within {timeout} s") from None
        if line is None:
            raise AssertionError(f"{self.name} exited: see {self.tmp / (self.name + '.log')}")
        return json.loads(line)

    def __call__(self, op: str, timeout: float = 30.0, **kw: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        # the child's own waits give up a little before we stop reading
        self.proc.stdin.write(json.dumps({"op": op, **kw, "timeout": max(1.0, timeout - 2.0)})
                              + "\n")
        self.proc.stdin.flush()
        out = self._read(timeout)
        assert "error" not in out or op in self.errors_allowed, (self.name, op, out)
        return out

    def wait_text(self, doc: str, *contains: str, timeout: float | None = None,
                  length: int | None = None) -> str:
        """The doc's text once it contains every part (and has ``length``, if given)."""
        kw: dict[str, Any] = {"contains": list(contains)}
        if length is not None:
            kw["length"] = length
        out = self("wait_text", doc=doc, timeout=timeout or self.wait_text_timeout, **kw)
        assert out["ok"], (self.name, out)
        return str(out["text"])

    def quit(self, timeout: float) -> dict[str, Any]:
        """Ask the child to close its node and exit; its last answer."""
        out = self("quit", timeout=timeout)
        self.proc.wait(timeout)
        self.log.close()
        return out

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()


def serve(handle: Callable[[dict[str, Any]], dict[str, Any]], ready: dict[str, Any]) -> None:
    """The child's side: say ``ready``, then answer each command on stdin with
    ``handle(cmd)`` until "quit" is answered. A command that raises is answered with
    ``{"error": ...}`` and the child keeps serving."""
    print(json.dumps({"ready": True, **ready}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        try:
            out = handle(cmd)
        except Exception as e:  # report, keep serving
            out = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps(out), flush=True)
        if cmd["op"] == "quit":
            return
