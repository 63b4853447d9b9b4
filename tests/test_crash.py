"""Crash safety: SIGKILL a committing child at random moments; nothing acknowledged is lost.

The child (store_child_node.py) commits a stream of changes and prints each
number after ``commit`` returned. The test kills it with SIGKILL after a random
delay, reopens the profile, and checks that every printed change is there, in
order, and that the stored chains verify (audit). The next trial continues on
the same profile, so later trials also exercise recovery of earlier crashes.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ownkernel import Node
from ownkernel.store import ProfileLockedError, audit

CHILD = Path(__file__).with_name("store_child_node.py")


def _run_trial(profile: Path, start: int, rng: random.Random) -> int:
    """One kill; returns the highest number the child acknowledged (or ``start``)."""
    child = subprocess.Popen([sys.executable, str(CHILD), "commit", str(profile), str(start)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    acked: list[int] = []
    started = threading.Event()

    def read() -> None:
        for line in child.stdout:  # type: ignore[union-attr]
            if line.startswith("start"):
                started.set()
            elif line.strip().isdigit():
                acked.append(int(line))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert started.wait(30), child.stderr.read() if child.poll() is not None else "no start"
    threading.Event().wait(rng.uniform(0.0, 0.25))  # kill at a random moment
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    reader.join(timeout=30)
    child.stderr.close()  # type: ignore[union-attr]
    return acked[-1] if acked else start


def _check(profile: Path, acked: int) -> int:
    """Reopen; every acknowledged line must be there, in order. Returns the last stored."""
    with Node(profile=profile) as node:
        (doc,) = node.docs()
        text = str(doc.text("body"))
        nums = [int(m) for m in re.findall(r"line (\d+)\n", text)]
        assert nums == list(range(1, len(nums) + 1)), "lines out of order or missing"
        assert len(nums) >= acked, f"acknowledged {acked} but only {len(nums)} stored"
        logged = set(doc.log("log"))
        # a transaction's two ops are stored together or not at all
        assert all(m in logged for m in nums if m % 3 == 0)
        assert audit(node.store, doc.id) == []
        # memory equals disk: the node reopened exactly what is stored
        assert node.store.change_count(doc.id) == sum(doc.version.values())
        return len(nums)


def _trials(tmp_path: Path, n: int, seed: int, per_profile: int = 20) -> None:
    rng = random.Random(seed)
    for i in range(n):
        if i % per_profile == 0:  # bounded work per trial: a fresh profile now and then
            profile = tmp_path / f"profile{i}"
            last = 0
        acked = _run_trial(profile, last, rng)
        assert acked >= last
        last = _check(profile, acked)


def test_sigkill_never_loses_acknowledged_changes(tmp_path: Path):
    _trials(tmp_path, 20, seed=1234)


@pytest.mark.slow
def test_sigkill_many_trials(tmp_path: Path):
    _trials(tmp_path, 120, seed=99)


def test_second_process_on_profile_fails_clearly(tmp_path: Path):
    profile = tmp_path / "shared"
    Node(profile=profile).close()  # create it
    child = subprocess.Popen([sys.executable, str(CHILD), "hold", str(profile)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().startswith("ready")  # type: ignore[union-attr]
        with pytest.raises(ProfileLockedError) as e:
            Node(profile=profile)
        msg = str(e.value)
        assert str(profile) in msg and f"process {child.pid}" in msg
    finally:
        child.stdin.write("\n")  # type: ignore[union-attr]
        child.stdin.flush()  # type: ignore[union-attr]
        child.wait(timeout=30)
    assert child.returncode == 0
    with Node(profile=profile):
        pass


def test_kill_while_holding_releases_profile(tmp_path: Path):
    profile = tmp_path / "p"
    child = subprocess.Popen([sys.executable, str(CHILD), "hold", str(profile)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().startswith("ready")  # type: ignore[union-attr]
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    with Node(profile=profile) as node:  # no stale lock
        assert len(node.id) == 32
