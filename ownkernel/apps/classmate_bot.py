"""One classmate: what it does (a pure, seeded script) and the process that does it.

The parent side (starting, stopping, reading what they did) is in
:mod:`ownkernel.apps.classmates`; this module is what each child process runs
(``_child_main``), talking to its parent over stdin/stdout (``PROTOCOL``).
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
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
