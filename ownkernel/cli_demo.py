"""`ownkernel demo`: two replicas converge, then two real nodes on 127.0.0.1; or
``--classmates N`` simulated classmates editing a doc."""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from ownkernel.cli_common import CliError


# -- demo -----------------------------------------------------------------------
def cmd_demo(args: argparse.Namespace) -> int:
    """Two replicas edit the same text at the same time, swap changes, converge.

    Then two networked nodes do the same over loopback sockets.
    """
    if getattr(args, "classmates", 0):
        return _demo_classmates(args)
    from ownkernel.crdt import Doc

    alice, bob = Doc(actor=b"alice"), Doc(actor=b"bob")
    alice.text("body").insert(0, "Hello world")
    alice.commit()
    bob.apply(alice.changes())
    print(f"both start with:      {str(bob.text('body'))!r}")

    # Concurrent edits: neither has seen the other's.
    alice.text("body").insert(5, ", dear")
    body = bob.text("body")
    body.delete(6, 5)
    body.insert(6, "everyone!")
    alice.counter("edits").increment(1)
    bob.counter("edits").increment(1)
    alice.commit()
    bob.commit()
    print(f"alice, offline, has:  {str(alice.text('body'))!r}")
    print(f"bob, offline, has:    {str(bob.text('body'))!r}")

    # Exchange only what the other lacks, as the network protocol does.
    to_bob = alice.changes(since=bob.version)
    to_alice = bob.changes(since=alice.version)
    bob.apply(to_bob)
    alice.apply(to_alice)
    a, b = str(alice.text("body")), str(bob.text("body"))
    print(f"exchanged {len(to_bob)} + {len(to_alice)} change(s)")
    print(f"alice now has:        {a!r}")
    print(f"bob now has:          {b!r}")
    print(f"edits counted:        {alice.counter('edits').value} and {bob.counter('edits').value}")
    if a != b:
        raise CliError("the replicas did not converge (this is a bug)")
    print("converged: yes")
    print()
    _demo_network()
    return 0


# Generous bounds: typically the whole network part takes well under a
# second, but a loaded CI machine must not turn the README's demo into a flake.
DEMO_TIMEOUT = 15.0


def _wait_for(what: str, check: Any, timeout: float = DEMO_TIMEOUT) -> None:
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            raise CliError(f"demo: {what} did not happen within {timeout:g} s")
        time.sleep(0.01)


def _demo_network() -> None:
    """The same edit, for real: two nodes on 127.0.0.1 with temporary profiles."""
    from ownkernel import Node

    # The demo's nodes talk to each other only, whatever the environment says.
    os.environ.pop("OWNKERNEL_BOOTSTRAP", None)
    t0 = time.monotonic()
    print("now over the network: two nodes on 127.0.0.1 (temporary profiles)")
    # Temporary profiles (deleted on close) and fresh ports: nothing persists.
    with Node(None, "alice", listen="tcp://127.0.0.1:0") as alice, \
            Node(None, "bob", listen="tcp://127.0.0.1:0") as bob:
        print(f"alice listens on      {alice.address.split('#')[0]}")
        doc = alice.new_doc(title="demo")
        doc.text("body").insert(0, "Hello world")
        token = alice.invite(doc)  # carries alice's address: bob needs nothing else
        print(f"alice invites bob:    {token[:24]}...")
        try:
            theirs = bob.join(token, timeout=DEMO_TIMEOUT, strict=True)
        except TimeoutError as exc:
            raise CliError(f"demo: {exc}") from None
        _wait_for("bob receiving the text",
                  lambda: str(theirs.text("body")) == "Hello world")
        print(f"bob joined and has:   {str(theirs.text('body'))!r}")
        # Both edit at once. Positions are found by content inside a
        # transaction (which holds the node's lock, so a change arriving from
        # the network can't slip in between reading and editing): the result
        # is the same whichever edit reaches the other side first.
        with doc.transaction():
            mine = doc.text("body")
            mine.insert(str(mine).index("Hello") + 5, ", dear")
        with theirs.transaction():
            body = theirs.text("body")
            at = str(body).index("world")
            body.delete(at, 5)
            body.insert(at, "everyone!")
        want = "Hello, dear everyone!"
        _wait_for("convergence", lambda: str(doc.text("body")) == want
                  == str(theirs.text("body")))
        print(f"alice now has:        {str(doc.text('body'))!r}")
        print(f"bob now has:          {str(theirs.text('body'))!r}")
    print(f"converged over the network: yes ({time.monotonic() - t0:.2f} s, nodes closed)")


# -- demo --classmates N ------------------------------------------------------------
def _demo_classmates(args: argparse.Namespace) -> int:
    """N simulated classmates (processes) edit a doc of a local node; we watch it."""
    from ownkernel import Node
    from ownkernel.apps.classmates import classmates

    n, seconds = args.classmates, args.seconds
    if not 1 <= n <= 64 or seconds <= 0:
        raise CliError("demo: --classmates takes 1 to 64, --seconds a positive number")
    os.environ.pop("OWNKERNEL_BOOTSTRAP", None)
    with Node(None, "you", listen="tcp://127.0.0.1:0") as node:
        doc = node.new_doc(title="class notes")
        doc.text("body").insert(0, "Class notes\n")
        print(f"starting {n} classmates on 127.0.0.1 (one process each, temporary profiles)")
        with classmates(node, doc, n=n, seed=args.seed, speed=args.speed) as cm:
            print("joined: " + ", ".join(cm.names) + f"; watching for {seconds:g} s "
                  "(Ctrl-C stops)")
            doc.log("chat").append({"author": "you", "text": f"Hi {cm.names[0]}!"})
            end = time.monotonic() + seconds
            try:
                while time.monotonic() < end:
                    time.sleep(min(2.0, max(0.0, end - time.monotonic())))
                    v = doc.version
                    print(f"-- {time.monotonic() - end + seconds:5.1f} s: "
                          f"{sum(v.get(i, 0) for i in cm.ids)} changes from classmates")
                    print(str(doc.text("body")).rstrip())
            except KeyboardInterrupt:
                pass
            print("-- chat:")
            for m in doc.log("chat").messages():
                if isinstance(m, dict):
                    print(f"  {m.get('author')}: {m.get('text')}")
            print("-- sheet:", doc.sheet("sheet").values())
        print("classmates stopped; nothing left running")
    return 0


def add_commands(sub: Any) -> None:
    """demo."""
    s = sub.add_parser("demo", help="two replicas edit concurrently and converge",
                       description="A short scripted demo: two documents edit the same text "
                       "concurrently, exchange changes, and converge; then the same with "
                       "two real nodes on 127.0.0.1 (temporary profiles, a few seconds).")
    s.add_argument("--classmates", type=int, default=0, metavar="N",
                   help="instead: N simulated classmates type, chat and add rows in a doc")
    s.add_argument("--seconds", type=float, default=20.0, help="with --classmates: how long")
    s.add_argument("--seed", type=int, default=None, help="with --classmates: repeatable")
    s.add_argument("--speed", type=float, default=1.0,
                   help="with --classmates: typing speed factor (1: a person)")
    s.set_defaults(func=cmd_demo)
