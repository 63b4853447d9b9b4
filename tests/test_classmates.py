"""Simulated classmates: real processes on 127.0.0.1 that join a doc and edit it."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ownkernel import Node
from ownkernel.apps.classmates import classmates, script

REPO = Path(__file__).resolve().parents[1]
FAST = 25.0  # classmates in tests type 25 times faster than people


def wait_for(check: Callable[[], object], timeout: float = 60.0) -> bool:
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            return False
        time.sleep(0.05)
    return True


def gone(pid: int) -> bool:
    """No such process, or only a zombie (an orphan whose reaper has not run yet)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        return True


@pytest.fixture
def teacher() -> Iterator[Node]:
    with Node(None, "teacher", listen="tcp://127.0.0.1:0") as node:
        yield node


def test_script_is_repeatable_per_seed_and_differs_between_classmates() -> None:
    def first(seed: object, index: int) -> list:
        return list(itertools.islice(script(seed, index), 400))

    assert first(7, 0) == first(7, 0)
    assert first(7, 0) != first(8, 0)
    assert first(7, 0) != first(7, 1)
    kinds = {s.kind for s in first(7, 0) + first(7, 1) + first(7, 2)}
    assert {"type", "backspace", "pause", "row", "say"} <= kinds
    # what is typed, with the backspaces applied, is the sentences themselves
    line = ""
    for s in itertools.islice(script(3, 0, offline=False), 3000):
        if s.kind == "type":
            line += s.text
        elif s.kind == "backspace":
            line = line[:-1]
    from ownkernel.apps.classmate_bot import SENTENCES
    assert any(sentence in line for sentence in SENTENCES)
    assert all(w in " ".join(SENTENCES) for w in line.split() if w.isalpha())


def test_classmates_with_a_seed_edit_as_n_distinct_authors(teacher: Node) -> None:
    doc = teacher.new_doc(title="class notes")
    doc.text("body").insert(0, "Notes\n")
    with classmates(teacher, doc, n=3, seed=11, speed=FAST) as cm:
        assert len(set(cm.ids)) == 3 and teacher.id not in cm.ids
        assert cm.names == ["Ada", "Grace", "Alan"]
        # every classmate's own edits reach the teacher: three authors besides us
        assert wait_for(lambda: all(doc.version.get(i, 0) >= 5 for i in cm.ids)), \
            (doc.version, [m.log() for m in cm.members])
        text = str(doc.text("body"))
        assert text.startswith("Notes\n")
        for name in cm.names:
            assert f"\n{name}:" in text
        # a mention gets an answer from the one mentioned
        doc.log("chat").append({"author": "teacher", "text": "Grace, are you there?"})
        assert wait_for(lambda: any(
            isinstance(m, dict) and m.get("author") == "Grace" and "@teacher" in m["text"]
            for m in doc.log("chat").messages()))
        pids = cm.pids
    assert all(gone(p) for p in pids)
    assert not cm.alive()


def test_stop_leaves_no_process_and_no_profile(teacher: Node, tmp_path: Path) -> None:
    doc = teacher.new_doc(title="x")
    cm = classmates(teacher, doc, n=2, seed=1, speed=FAST)
    tmp = cm._tmp
    assert all(m.alive for m in cm.members)
    cm.stop()
    assert all(gone(p) for p in cm.pids)
    assert not tmp.exists()
    # the classmates closed their nodes cleanly (exit 0), deleting their profiles
    assert [m.proc.returncode for m in cm.members] == [0, 0]
    cm.stop()  # twice is fine
    with pytest.raises(RuntimeError, match="Ada has left"):
        cm.offline("Ada", 1)


def test_killing_the_parent_leaves_no_orphan(tmp_path: Path) -> None:
    parent = textwrap.dedent("""
        import sys, time
        from ownkernel import Node
        from ownkernel.apps import classmates
        node = Node(None, "teacher", listen="tcp://127.0.0.1:0")
        doc = node.new_doc(title="x")
        cm = classmates(node, doc, n=3, seed=2, speed=25)
        print(" ".join(map(str, cm.pids)), cm._tmp, flush=True)
        time.sleep(600)
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.Popen([sys.executable, "-c", parent], stdout=subprocess.PIPE, env=env,
                         text=True)
    try:
        assert p.stdout is not None
        *words, tmp = p.stdout.readline().split()
        pids = [int(x) for x in words]
        assert len(pids) == 3 and not any(gone(x) for x in pids) and Path(tmp).is_dir()
        p.send_signal(signal.SIGKILL)  # no cleanup code of the parent runs
        p.wait()
        assert wait_for(lambda: all(gone(x) for x in pids), timeout=30), \
            [x for x in pids if not gone(x)]
        assert not Path(tmp).exists()  # the last one out removed the folder of logs
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_classmates_leave_by_themselves_when_idle(teacher: Node) -> None:
    doc = teacher.new_doc(title="idle")
    cm = classmates(teacher, doc, n=2, seed=3, speed=FAST, idle=1.0)
    try:
        assert wait_for(lambda: not cm.alive(), timeout=30)
        assert all("idle" in m.events for m in cm.members)
    finally:
        cm.stop()


def test_bad_arguments_are_refused_clearly(teacher: Node) -> None:
    doc = teacher.new_doc(title="x")
    with pytest.raises(ValueError, match="n must be"):
        classmates(teacher, doc, n=0)
    with pytest.raises(ValueError, match="speed"):
        classmates(teacher, doc, speed=0)
    with pytest.raises(KeyError, match="no document"):
        classmates(teacher, "no such doc")
    with Node(None, "quiet", listen=None) as quiet:
        d = quiet.new_doc(title="q")
        with pytest.raises(RuntimeError, match="does not listen"):
            classmates(quiet, d)


def test_offline_on_request_then_back_and_the_offline_edits_merge(teacher: Node) -> None:
    doc = teacher.new_doc(title="merge")
    with classmates(teacher, doc, n=2, seed=4, speed=FAST, offline=False) as cm:
        with pytest.raises(KeyError, match="they are Ada, Grace"):
            cm.offline("Nobody")
        with pytest.raises(ValueError, match="seconds"):
            cm.offline("Ada", 0)
        cm.offline("Grace", 2.0)
        assert wait_for(lambda: "offline" in cm.events("Grace"))
        # while Grace is away, the teacher edits too: both sides change concurrently
        doc.text("body").insert(0, "Teacher was here.\n")
        assert wait_for(lambda: "online" in cm.events("Grace"))
        # what Grace typed offline arrives after she is back
        grace = cm.member("Grace").id
        assert wait_for(lambda: "(typed offline)" in str(doc.text("body"))), \
            (str(doc.text("body")), doc.version.get(grace), teacher.stats()["waiting"])
        assert str(doc.text("body")).startswith("Teacher was here.\n")
        assert "offline" not in cm.events("Ada")


def test_a_classmate_asked_for_a_row_adds_one(teacher: Node) -> None:
    doc = teacher.new_doc(title="rows")
    with classmates(teacher, doc, n=1, seed=9, speed=FAST, offline=False):
        doc.log("chat").append({"author": "teacher", "text": "Ada, add a row to the sheet?"})
        assert wait_for(lambda: any("Ada" in r for r in doc.sheet("sheet").values()))
        assert wait_for(lambda: any("Added" in m.get("text", "") and "@teacher" in m["text"]
                                    for m in doc.log("chat").messages()))


def test_cli_demo_with_classmates() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.run([sys.executable, "-m", "ownkernel", "demo", "--classmates", "2",
                        "--seconds", "3", "--seed", "1", "--speed", str(FAST)],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "joined: Ada, Grace" in p.stdout
    assert "\nAda:" in p.stdout and "\nGrace:" in p.stdout
    assert "Ada: @you" in p.stdout  # she answered the greeting
    assert p.stdout.rstrip().endswith("classmates stopped; nothing left running")
    bad = subprocess.run([sys.executable, "-m", "ownkernel", "demo", "--classmates", "3",
                          "--seconds", "-1"], capture_output=True, text=True, env=env)
    assert bad.returncode == 1 and "--seconds a positive number" in bad.stderr


def test_edits_made_offline_arrive_while_their_author_keeps_typing(tmp_path: Path) -> None:
    """What a classmate's offline spell found: pushes of new changes right after a
    reconnect must not make the peer look as if it held the offline ones before them."""
    with Node(None, "hub", listen="tcp://127.0.0.1:0") as hub:
        doc = hub.new_doc(title="gap")
        token = hub.invite(doc)
        prof = tmp_path / "laptop"
        with Node(prof, "laptop", listen=None) as n:
            n.join(token, timeout=15).text("body").insert(0, "a")
        assert wait_for(lambda: str(doc.text("body")) == "a", timeout=15)
        with Node(prof, "laptop", network=False) as n:
            t = n.open(doc.id).text("body")
            for _ in range(20):
                t.insert(len(t), "o")
        with Node(prof, "laptop", listen=None) as n:
            t = n.join(token, timeout=15).text("body")
            end = time.monotonic() + 30
            while "o" * 20 not in str(doc.text("body")) and time.monotonic() < end:
                t.insert(len(t), "x")  # typing on: every key is pushed at once
                time.sleep(0.002)
            assert "a" + "o" * 20 in str(doc.text("body"))
