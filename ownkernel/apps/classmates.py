"""Simulated classmates: bot nodes that join a doc and behave a bit like people.

    from ownkernel.apps import classmates
    with classmates(node, doc, n=3, seed=1) as cm:   # three processes on 127.0.0.1
        ...                                          # they type, chat, add rows

Each classmate is a separate Python process with its own temporary profile, name
and colour. It joins ``doc`` through an invite token (sent on its stdin, never in
argv, which ``ps`` shows to everyone) and then, at a human pace: types sentences
on its own line of the text root (with typos it backspaces over), answers in the
chat when mentioned, adds rows to the sheet, and now and then goes offline, keeps
typing, and comes back, so the merge shows. What it does is a pure script
(:func:`script`) seeded by ``(seed, index)``: same seed, same choices in the same
order; only the timing is the real world's.

A classmate ends when ``stop()`` closes its stdin, when its parent dies (stdin
reaches EOF; it also watches ``os.getppid()``), or after ``idle`` seconds without
an edit from the node that started it: a Binder session must be able to shut
down, and nothing may be left behind. More in docs/workshop.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ownkernel.apps.classmate_bot import PROTOCOL, script

__all__ = ["Classmate", "Classmates", "classmates", "script", "NAMES", "COLOURS"]

NAMES = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken",
         "Margaret", "Dennis", "Radia", "Tim", "Hedy", "Linus", "Katherine", "Guido",
         "Sophie", "John", "Annie", "Niklaus", "Jean", "Bjarne", "Karen", "Leslie"]
COLOURS = ["#d9480f", "#2b8a3e", "#1971c2", "#ae3ec9", "#e67700", "#0c8599",
           "#c2255c", "#5f3dc4", "#66a80f", "#364fc7", "#a61e4d", "#087f5b"]




# ============================================================ the parent side
@dataclass
class Classmate:
    """One classmate process, as the parent sees it."""

    name: str
    colour: str
    index: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    id: bytes | None = None
    events: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        """What the process wrote on stderr (warnings, a traceback if it failed)."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


class Classmates:
    """Running classmates; ``stop()`` ends them (also a context manager)."""

    def __init__(self, doc: Any, members: list[Classmate], tmp: Path) -> None:
        self.doc = doc
        self.members = members
        self._tmp = tmp
        self._lock = threading.Lock()
        self._stopped = False
        self._readers = [threading.Thread(target=self._read, args=(m,), daemon=True,
                                          name=f"classmate-{m.name}") for m in members]
        for t in self._readers:
            t.start()

    # -- reading what the children say ------------------------------------------------
    def _read(self, m: Classmate) -> None:
        assert m.proc.stdout is not None
        for raw in m.proc.stdout:
            line = raw.decode("utf-8", "replace").strip()
            if not line:
                continue
            with self._lock:
                if line.startswith("ready ") and m.id is None:
                    with contextlib.suppress(ValueError):
                        m.id = bytes.fromhex(line.split()[1])
                m.events.append(line)

    def wait_ready(self, timeout: float) -> None:
        """Wait until every classmate has joined and holds the doc (bounded)."""
        end = time.monotonic() + timeout
        while True:
            with self._lock:
                waiting = [m for m in self.members if m.id is None]
            if not waiting:
                return
            dead = [m for m in waiting if not m.alive]
            if dead or time.monotonic() > end:
                m = (dead or waiting)[0]
                tail = " | ".join(m.log().strip().splitlines()[-3:]) or "no output"
                why = f"exited ({m.proc.returncode})" if dead else f"not ready in {timeout:g} s"
                self.stop()
                raise RuntimeError(f"classmate {m.name} (pid {m.pid}) {why}: {tail}")
            time.sleep(0.02)

    # -- public -----------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return [m.name for m in self.members]

    @property
    def ids(self) -> list[bytes]:
        return [m.id for m in self.members if m.id is not None]

    @property
    def pids(self) -> list[int]:
        return [m.pid for m in self.members]

    def alive(self) -> list[Classmate]:
        return [m for m in self.members if m.alive]

    def member(self, name: str) -> Classmate:
        for m in self.members:
            if m.name.lower() == name.lower():
                return m
        raise KeyError(f"no classmate named {name!r}; they are {', '.join(self.names)}")

    def offline(self, name: str, seconds: float = 5.0) -> None:
        """Ask classmate ``name`` to leave the network for ``seconds`` (it keeps typing
        offline, then comes back and its edits merge). Its ``events`` gain
        ``offline`` and ``online``."""
        if not 0 < seconds <= 3600:
            raise ValueError(f"seconds must be in (0, 3600], not {seconds!r}")
        m = self.member(name)
        if self._stopped or not m.alive:
            raise RuntimeError(f"classmate {m.name} has left (see .events({m.name!r}))")
        assert m.proc.stdin is not None
        try:
            m.proc.stdin.write(f"offline {seconds:g}\n".encode())
            m.proc.stdin.flush()
        except (BrokenPipeError, ValueError):  # it left just now
            raise RuntimeError(f"classmate {m.name} has left") from None

    def events(self, name: str) -> list[str]:
        """What classmate ``name`` reported so far: ready, offline, online, idle."""
        m = self.member(name)
        with self._lock:
            return [e.split()[0] for e in m.events]

    def stop(self, timeout: float = 10.0) -> None:
        """End every classmate: close its stdin (it leaves cleanly), then SIGTERM, SIGKILL."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        for m in self.members:
            with contextlib.suppress(OSError, ValueError):
                assert m.proc.stdin is not None
                m.proc.stdin.close()
        end = time.monotonic() + timeout
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            for m in self.members:
                if sig is not None and m.alive:
                    with contextlib.suppress(ProcessLookupError):
                        m.proc.send_signal(sig)
            for m in self.members:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    m.proc.wait(timeout=max(0.1, end - time.monotonic()))
            if not self.alive():
                break
            end = time.monotonic() + 3.0
        for m in self.members:
            if m.proc.stdout is not None:
                m.proc.stdout.close()
        for t in self._readers:
            t.join(timeout=1.0)
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> Classmates:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __del__(self) -> None:
        # a plain try: at interpreter exit module globals (contextlib) may be gone
        try:
            if not self._stopped:
                self.stop(timeout=2.0)
        except Exception:  # noqa: S110 - nothing left to report to
            pass

    def __repr__(self) -> str:
        who = ", ".join(f"{m.name} ({'on' if m.alive else 'gone'})" for m in self.members)
        return f"<Classmates {len(self.members)}: {who}>"

    def _repr_html_(self) -> str:
        from html import escape

        chips = "".join(
            f"<span style='display:inline-block;margin:2px 6px 2px 0;padding:1px 8px;"
            f"border-radius:9px;color:white;background:{m.colour}'>{escape(m.name)}"
            f"{'' if m.alive else ' (gone)'}</span>" for m in self.members)
        return (f"<div><b>{len(self.members)} simulated classmates</b> (processes on "
                f"127.0.0.1; <code>.stop()</code> ends them) {chips}</div>")


def classmates(node: Any, doc: Any, n: int = 3, seed: Any = None, *, speed: float = 1.0,
               idle: float = 600.0, text: str = "body", chat: str = "chat",
               sheet: str = "sheet", offline: bool = True,
               wait: float | None = 30.0) -> Classmates:
    """Start ``n`` classmates that join ``doc`` (a DocHandle or ref this node may invite to).

    ``speed`` divides every delay (tests use 20 or more); ``idle``: seconds
    without an edit from ``node`` after which they leave by themselves;
    ``text``/``chat``/``sheet``: the roots they use; ``offline``: whether they
    sometimes drop off the network; ``wait``: seconds to wait until all have
    joined (None: return at once). ``seed`` makes their choices repeatable.
    """
    if not isinstance(n, int) or not 1 <= n <= 64:
        raise ValueError(f"classmates: n must be an integer from 1 to 64, not {n!r}")
    if not speed > 0:
        raise ValueError(f"classmates: speed must be positive, not {speed!r}")
    handle = node.open(doc)
    if not node.addresses:
        raise RuntimeError("classmates: this node does not listen on any address, so "
                           "nobody can join it (start it with listen='tcp://127.0.0.1:0')")
    with handle.transaction():
        # rows added at once by several classmates must share columns: made here, once
        sh = handle.sheet(sheet)
        if sh.ncols < 3:
            sh.resize(sh.nrows, 3)
    token = node.invite(handle, write=True)
    if seed is None:
        seed = random.SystemRandom().randrange(2**32)
    tmp = Path(tempfile.mkdtemp(prefix="ownkernel-classmates-"))
    env = dict(os.environ)
    env.pop("OWNKERNEL_BOOTSTRAP", None)  # the classmates talk to this node only
    # the children import the same ownkernel as this process, wherever it lives
    pkg_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([pkg_root, *filter(None, [env.get("PYTHONPATH")])])
    members: list[Classmate] = []
    try:
        for i in range(n):
            name = NAMES[i % len(NAMES)] + ("" if i < len(NAMES) else f" {i // len(NAMES) + 1}")
            colour = COLOURS[i % len(COLOURS)]
            log_path = tmp / f"{i}.log"
            with open(log_path, "wb") as logf:
                # its own session: a kernel interrupt (SIGINT to the group) must not hit it
                proc = subprocess.Popen(
                    [sys.executable, "-c", "import sys; from ownkernel.apps.classmate_bot "
                     "import _child_main; sys.exit(_child_main())"],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=logf, env=env,
                    start_new_session=True, close_fds=True)
            cfg = {"v": PROTOCOL, "token": token, "name": name, "colour": colour,
                   "index": i, "seed": seed, "speed": speed, "idle": idle, "text": text,
                   "chat": chat, "sheet": sheet, "offline": offline, "parent": os.getpid(),
                   "starter": node.id.hex(), "log": str(log_path)}
            assert proc.stdin is not None
            proc.stdin.write((json.dumps(cfg) + "\n").encode())
            proc.stdin.flush()
            members.append(Classmate(name, colour, i, proc, log_path))
    except BaseException:
        Classmates(handle, members, tmp).stop()
        raise
    group = Classmates(handle, members, tmp)
    if wait:
        group.wait_ready(wait)
    return group
