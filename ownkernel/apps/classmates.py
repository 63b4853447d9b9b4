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
import queue
import random
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Classmate", "Classmates", "classmates", "script", "NAMES", "COLOURS"]

NAMES = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken",
         "Margaret", "Dennis", "Radia", "Tim", "Hedy", "Linus", "Katherine", "Guido",
         "Sophie", "John", "Annie", "Niklaus", "Jean", "Bjarne", "Karen", "Leslie"]
COLOURS = ["#d9480f", "#2b8a3e", "#1971c2", "#ae3ec9", "#e67700", "#0c8599",
           "#c2255c", "#5f3dc4", "#66a80f", "#364fc7", "#a61e4d", "#087f5b"]

SENTENCES = [
    "I think the second example is the clearest one.",
    "Could we go over the part about merging again?",
    "My notes: every edit is stored before it is sent.",
    "Two people typing at once still converge.",
    "The sheet adds up our snacks budget.",
    "Offline edits arrive when I reconnect.",
    "Question: who owns a document?",
    "I like that there is no server in the middle.",
    "Invites carry the address of the inviter.",
    "Let's try the chat next.",
    "A CRDT never needs a lock.",
    "Note to self: read docs/crdt.md later.",
]
REPLIES = ["Yes, I see it too!", "On it.", "Good question, let me check.", "Agreed.",
           "I'm here.", "Typing it into the notes now.", "Sure, one moment.",
           "That worked for me."]
CHATTER = ["Hi everyone!", "Is my text showing up for you?", "Back online now.",
           "Nice, the rows merged.", "Can someone add drinks to the sheet?"]
ITEMS = [("coffee", 12.5), ("cake", 20), ("juice", 6), ("fruit", 9.5), ("cookies", 4),
         ("tea", 3.5), ("sandwiches", 18), ("napkins", 2)]
KEYS = "qwertyuiopasdfghjklzxcvbnm"
KEY_DELAY = (0.12, 0.45)  # s: ~200 characters a minute, someone taking notes while listening

PROTOCOL = 1  # of the stdin/stdout conversation between parent and classmate


# ============================================================ the script (pure)
@dataclass(frozen=True)
class Step:
    """One thing a classmate does. ``kind``: type, backspace, pause, row, say, offline."""

    kind: str
    text: str = ""
    seconds: float = 0.0
    row: tuple[Any, ...] = ()
    boundary: bool = False  # the pause between two actions: where a request may cut in


def script(seed: Any, index: int, offline: bool = True) -> Iterator[Step]:
    """The endless, repeatable sequence of a classmate's steps (delays at human pace)."""
    rng = random.Random(f"ownkernel-classmate:{seed}:{index}")
    while True:
        r = rng.random()
        if r < 0.70:
            yield from _type_sentence(rng, rng.choice(SENTENCES))
        elif r < 0.82:
            item, price = rng.choice(ITEMS)
            yield Step("row", row=(item, round(price * rng.choice((1, 1, 2)), 2)))
        elif r < 0.90:
            yield Step("say", text=rng.choice(CHATTER))
        elif r < 0.95 and offline:
            yield Step("offline", seconds=rng.uniform(3.0, 10.0))
        else:
            yield Step("pause", seconds=rng.uniform(2.0, 6.0))
        yield Step("pause", seconds=rng.uniform(0.8, 4.0), boundary=True)


def _type_sentence(rng: random.Random, sentence: str) -> Iterator[Step]:
    sentence = " " + sentence
    for ch in sentence:
        if ch.isalpha() and rng.random() < 0.05:  # a typo, noticed after 0-2 more keys
            wrong = rng.choice(KEYS.replace(ch.lower(), ""))
            yield Step("type", text=wrong, seconds=rng.uniform(*KEY_DELAY))
            extra = rng.randint(0, 2)
            for _ in range(extra):
                yield Step("type", text=rng.choice(KEYS), seconds=rng.uniform(*KEY_DELAY))
            yield Step("pause", seconds=rng.uniform(0.2, 0.6))
            for _ in range(extra + 1):
                yield Step("backspace", seconds=rng.uniform(0.08, 0.15))
        yield Step("type", text=ch, seconds=rng.uniform(*KEY_DELAY))
        if ch in ",.?!" and rng.random() < 0.5:
            yield Step("pause", seconds=rng.uniform(0.5, 2.0))


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
                    [sys.executable, "-c", "import sys; from ownkernel.apps.classmates "
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


# ============================================================ the child side
class _Bot:
    """Carries out a script against a real node; the node is reopened to go offline."""

    def __init__(self, cfg: dict[str, Any], stop: threading.Event, profile: Path,
                 commands: queue.SimpleQueue[list[str]]) -> None:
        self.cfg = cfg
        self.commands = commands
        self.pending: list[str] | None = None
        self.stop = stop
        self.profile = profile
        self.name: str = cfg["name"]
        self.speed = float(cfg["speed"])
        self.starter = bytes.fromhex(cfg["starter"])
        self.node: Any = None
        self.doc: Any = None
        self.online = False
        self.tag = f"{self.name}:"
        self.last_human = time.monotonic()
        self.starter_seq = 0
        self.seen_chat = 0
        self.replies = 0
        self.presence_at = 0.0
        self.watched = 0.0

    # -- node life ---------------------------------------------------------------------
    def open(self, online: bool) -> None:
        from ownkernel import Node

        if online:
            self.node = Node(self.profile, self.name, listen=None)
            self.doc = self.node.join(self.cfg["token"], timeout=30.0)
        else:
            self.node = Node(self.profile, self.name, network=False)
            self.doc = self.node.open(self.doc.id)
        self.online = online

    def close(self) -> None:
        if self.node is not None:
            with contextlib.suppress(Exception):
                if self.online:
                    self.node.set_presence(self.doc, None)
            self.node.close()
            self.node = None

    # -- waiting, with the watchdogs ------------------------------------------------------
    def sleep(self, seconds: float, boundary: bool = False) -> bool:
        """Wait ``seconds / speed``; answer mentions meanwhile. False: time to leave.
        On a ``boundary`` a request from the parent ends the wait (``self.pending``)."""
        end = time.monotonic() + seconds / self.speed
        while True:
            if self.stop.is_set():
                return False
            if self.online and time.monotonic() - self.watched > 0.25:
                self.watched = time.monotonic()
                self.watch()
            if time.monotonic() - self.last_human > float(self.cfg["idle"]):
                print("idle", flush=True)
                return False
            left = end - time.monotonic()
            if left <= 0:
                return True
            if boundary and self.online and self.pending is None and not self.commands.empty():
                self.pending = self.commands.get()
                return True  # the parent asked for something: do it now
            self.stop.wait(min(left, 0.05))

    def watch(self) -> None:
        seq = self.doc.version.get(self.starter, 0)
        if seq != self.starter_seq:
            self.starter_seq = seq
            self.last_human = time.monotonic()
        log = self.doc.log(self.cfg["chat"])
        msgs = log.messages()
        new, self.seen_chat = msgs[self.seen_chat:], len(msgs)
        me = self.name.lower()
        for m in new:
            text = str(m.get("text", "")) if isinstance(m, dict) else str(m)
            author = str(m.get("author") or m.get("from") or "") if isinstance(m, dict) else ""
            if author == self.name or me not in text.lower():
                continue
            # its own generator, so mentions (which depend on timing) do not shift the
            # repeatable main script
            rng = random.Random(f"reply:{self.cfg['seed']}:{self.cfg['index']}:{self.replies}")
            self.replies += 1
            who = f"@{author} " if author else ""
            low = text.lower()
            if "sheet" in low or "row" in low:  # a request: do it, then say so
                item, price = rng.choice(ITEMS)
                self.act(Step("row", row=(item, price)))
                self.say(f"{who}Added {item} to the sheet.")
            else:
                self.say(who + rng.choice(REPLIES))
            self.seen_chat = len(log.messages())

    # -- acting ----------------------------------------------------------------------------
    def line_end(self, t: Any) -> int:
        """Where this classmate types: the end of its own line (made if missing)."""
        s = str(t)
        if s.startswith(self.tag):
            start = 0
        else:
            start = s.find("\n" + self.tag) + 1
            if start == 0:  # not there (yet, or someone deleted it): a new line at the end
                prefix = "\n" if s and not s.endswith("\n") else ""
                t.insert(len(s), f"{prefix}{self.tag}\n")
                s = str(t)
                start = len(s) - len(self.tag) - 1
        end = s.find("\n", start)
        return len(s) if end < 0 else end

    def act(self, step: Step) -> None:
        doc = self.doc
        if step.kind in ("type", "backspace"):
            with doc.transaction():
                t = doc.text(self.cfg["text"])
                at = self.line_end(t)
                if step.kind == "type":
                    t.insert(at, step.text)
                    at += 1
                elif at > 0 and str(t)[at - 1] not in "\n:":
                    t.delete(at - 1, 1)
                    at -= 1
            self.cursor(at)
        elif step.kind == "row":
            with doc.transaction():
                sh = doc.sheet(self.cfg["sheet"])
                r = sh.nrows
                sh.insert_rows(r, 1)
                for c, v in enumerate((*step.row, self.name)):
                    sh.set((r, c), v)
        elif step.kind == "say":
            self.say(step.text)

    def say(self, text: str) -> None:
        self.doc.log(self.cfg["chat"]).append(
            {"author": self.name, "from": self.node.id.hex(), "text": text,
             "color": self.cfg["colour"], "time": time.time()})

    def cursor(self, at: int) -> None:
        now = time.monotonic()
        if not self.online or now - self.presence_at < 0.3:
            return  # presence is a signed claim per update: not one per key
        self.presence_at = now
        self.node.set_presence(self.doc, {"name": self.name, "color": self.cfg["colour"],
                                          "cursors": {self.cfg["text"]: [at, at]}})

    def run(self) -> None:
        self.open(online=True)
        self.starter_seq = self.doc.version.get(self.starter, 0)
        self.seen_chat = len(self.doc.log(self.cfg["chat"]).messages())
        print(f"ready {self.node.id.hex()}", flush=True)
        for step in script(self.cfg["seed"], self.cfg["index"], self.cfg["offline"]):
            if step.kind == "offline":
                if not self.spell(step.seconds):
                    return
                continue
            if step.kind != "pause":
                self.act(step)
            if not self.sleep(step.seconds, boundary=step.boundary):
                return
            cmd, self.pending = self.pending, None
            # asked by the parent (Classmates.offline), only between two actions: cut
            # into a typo, its backspaces would eat what was typed meanwhile
            offline = cmd is not None and len(cmd) == 2 and cmd[0] == "offline"
            if offline and not self.spell(float(cmd[1]) * self.speed):  # real seconds
                return

    def spell(self, seconds: float) -> bool:
        """Go offline for ``seconds`` (scaled by speed), then back. False: time to leave."""
        print("offline", flush=True)
        self.close()
        self.open(online=False)
        ok = self.offline(seconds)
        self.close()
        if not ok:
            return False
        self.open(online=True)
        print("online", flush=True)
        return True

    def offline(self, seconds: float) -> bool:
        """Type "(typed offline)" without a network; stay away ``seconds`` at least.

        The sentence is always finished (on a busy machine each commit's fsync can
        be slow), so what was typed offline is recognisable once it merges."""
        end = time.monotonic() + seconds / self.speed
        for step in _type_sentence(random.Random(f"offline:{self.cfg['seed']}"),
                                   "(typed offline)"):
            self.act(step)
            if not self.sleep(step.seconds):
                return False
        return self.sleep(max(0.0, end - time.monotonic()) * self.speed)


def run_bot(cfg: dict[str, Any], stop: threading.Event,
            commands: queue.SimpleQueue[list[str]]) -> int:
    profile = Path(tempfile.mkdtemp(prefix="ownkernel-classmate-"))
    bot = _Bot(cfg, stop, profile / "p", commands)
    try:
        bot.run()
        return 0
    finally:
        with contextlib.suppress(Exception):
            bot.close()
        shutil.rmtree(profile, ignore_errors=True)


def _child_main() -> int:
    # Only os.read on fd 0: a buffered reader could swallow a later command.
    buf = b""
    while b"\n" not in buf:
        chunk = os.read(0, 65536)
        if not chunk:
            return 0
        buf += chunk
    line, buf = buf.split(b"\n", 1)
    cfg = json.loads(line)
    if cfg.get("v") != PROTOCOL:
        print(f"classmate: protocol {cfg.get('v')!r} is not {PROTOCOL}", file=sys.stderr)
        return 2
    stop = threading.Event()
    commands: queue.SimpleQueue[list[str]] = queue.SimpleQueue()

    def watch_stdin(buf: bytes) -> None:
        # EOF on stdin: the parent closed it (stop()) or died (the OS closed it)
        while not stop.is_set():
            while b"\n" in buf:
                cmd, buf = buf.split(b"\n", 1)
                commands.put(cmd.decode("utf-8", "replace").split())
            r, _, _ = select.select([0], [], [], 0.5)
            if r:
                chunk = os.read(0, 4096)
                if not chunk:
                    break
                buf += chunk
            if os.getppid() != cfg["parent"]:
                break
        stop.set()

    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    threading.Thread(target=watch_stdin, args=(buf,), daemon=True).start()
    try:
        return run_bot(cfg, stop, commands)
    finally:
        if os.getppid() != cfg["parent"] and cfg.get("log"):
            # the parent died before stop(): nobody will read the log or remove the
            # folder of logs; the last classmate out removes it
            log = Path(cfg["log"])
            with contextlib.suppress(OSError):
                log.unlink()
            with contextlib.suppress(OSError):
                log.parent.rmdir()


if __name__ == "__main__":
    sys.exit(_child_main())
