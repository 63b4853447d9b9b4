"""The `ownkernel` command: install the kernel, run a headless node, demo, status, doctor
(docs, new, lab and the control-socket client: cli_contact.py).

Errors are one line on stderr (`ownkernel: error: …`) with a non-zero exit
code: 2 for bad usage, 1 when the command itself fails. Nothing here prints a
traceback unless `OWNKERNEL_DEBUG=1`.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, NoReturn

__all__ = ["CliError", "body_decoders", "main"]

log = logging.getLogger("ownkernel")


class CliError(Exception):
    """A failure to report as one line with exit code 1."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, not argparse's usage block: scripts grep stderr.
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# -- install --------------------------------------------------------------------
def cmd_install(args: argparse.Namespace) -> int:
    from ownkernel.kernel.install import install

    user, sys_prefix, prefix = args.user, args.sys_prefix, args.prefix
    if not (user or sys_prefix or prefix):
        # In a virtual env the env itself is the natural home; otherwise the user's.
        in_venv = sys.prefix != getattr(sys, "base_prefix", sys.prefix)
        sys_prefix, user = in_venv, not in_venv
    try:
        path = install(user=user, sys_prefix=sys_prefix, prefix=prefix, name=args.name,
                       display_name=args.display_name)
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot install the kernelspec: {exc}") from None
    print(f"Installed kernelspec {args.name} ({args.display_name}) in {path}")
    return 0


# -- node, status, invite, join: things that open a profile ---------------------
def _settings(args: argparse.Namespace, network: bool) -> Any:
    from ownkernel.kernel.settings import SettingsError, load_settings

    overrides: dict[str, Any] = {"profile": getattr(args, "profile", None)}
    if network:
        overrides.update(name=args.name, listen=args.listen or None,
                         bootstrap=args.bootstrap or None, relay=args.relay or None)
    try:
        settings = load_settings(overrides=overrides)
    except SettingsError as exc:
        raise CliError(str(exc)) from None
    if not network:
        from dataclasses import replace

        # One-shot commands never listen or dial out: they read the profile and leave.
        settings = replace(settings, listen=None, bootstrap=[], relay=False)
    return settings


def _open_node(settings: Any, strict: bool = False, network: bool = True) -> Any:
    from ownkernel.kernel.nodehost import NodeUnavailable, make_node

    try:
        node, notes = make_node(settings, settings.profile_dir(), strict=strict,
                                network=network)
    except ImportError as exc:
        raise CliError(f"the ownkernel Node is not available: {exc}") from None
    except NodeUnavailable as exc:
        raise CliError(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - store errors already say what to do
        raise CliError(" ".join(str(exc).split()) or type(exc).__name__) from None
    for n in notes:
        log.warning("%s", n)
    return node


def _ident(node: Any) -> str:
    value = getattr(node, "id", "?")
    return value.hex() if isinstance(value, bytes) else str(value)


def _last_addresses(node: Any) -> list[str]:
    """Where this profile's node listened last time it ran networked.

    A node given `tcp://host:0` reuses that port next time when it is free
    (sticky port), so an invite made offline with these addresses reaches the
    profile's kernel or `ownkernel node` once it runs again.
    """
    from ownkernel.node.config import advertised

    try:
        said = node.store.get_setting("net.advertised")
        endpoints = node.store.get_setting("net.endpoints") or []
    except Exception:  # noqa: BLE001 - an older store: invite without addresses
        return []
    if isinstance(said, list) and all(isinstance(a, str) for a in said):
        return list(said)  # what it announced (--advertise, interface addresses)
    try:  # an older profile: wildcard binds become this machine's addresses
        return advertised([str(e) for e in endpoints], None, node.id)
    except ValueError:
        return []


def _peer_line(peer: Any) -> str:
    addrs = ", ".join(getattr(peer, "addresses", ()) or ()) or "no address"
    return f"{peer.id.hex()[:12]} {peer.name or '-'} ({addrs})"


def _log_network_events(node: Any) -> None:
    # Callbacks run on the node's network thread; logging is thread-safe.
    def changed(doc_id: bytes, source: bytes | None) -> None:
        if source is not None:  # remote changes only (a headless node makes none)
            log.debug("doc %s changed by %s", doc_id.hex()[:12], source.hex()[:12])

    node.on("peer_joined", lambda p: log.info("peer joined: %s", _peer_line(p)))
    node.on("peer_left", lambda p: log.info("peer left: %s", _peer_line(p)))
    node.on("doc_changed", changed)


def cmd_node(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    if args.advertise:
        # The Node reads OWNKERNEL_ADVERTISE (kernels get it the same way).
        os.environ["OWNKERNEL_ADVERTISE"] = " ".join(args.advertise)
    settings = _settings(args, network=True)
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    # Handlers first: a SIGTERM during startup must still stop us cleanly.
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    where = _websocket_arg(args)
    if where is not None:
        settings = _websocket_settings(settings)
    node = _open_node(settings, strict=True)
    endpoint = None
    try:
        if getattr(node, "network", None) is not None:
            _log_network_events(node)
        addrs = list(getattr(node, "addresses", None) or [])
        if where is not None:
            endpoint = _serve_websocket(node, *where)
            addrs = [a for a in (endpoint.address,) if a] + addrs
        log.info("node %s (%s) on profile %s%s", _ident(node)[:12], getattr(node, "name", ""),
                 settings.profile_dir(), f", listening on {', '.join(addrs)}" if addrs else "")
        # One stdout line scripts can wait for: id, then the addresses to bootstrap from.
        print(" ".join(["ready", _ident(node), *addrs]), flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        t0 = time.monotonic()
        if endpoint is not None:
            endpoint.close()
        node.close()
        log.info("node closed in %.2f s", time.monotonic() - t0)
    return 0


# -- node --websocket: the relay endpoint without jupyter-server (docs/relay.md) --
def _websocket_arg(args: argparse.Namespace) -> tuple[str, int] | None:
    value = getattr(args, "websocket", None)
    if value is None:
        return None
    from ownkernel.serverext.standalone import parse_hostport

    try:
        return parse_hostport(value)
    except ValueError as exc:
        raise CliError(str(exc)) from None


def _websocket_settings(settings: Any) -> Any:
    """The tunnels reach the node over loopback: make sure it listens there too."""
    from dataclasses import replace

    from ownkernel.serverext.standalone import websocket_listen

    if settings.listen == []:
        raise CliError("--websocket needs the node to listen (its tunnels end on a loopback "
                       "TCP endpoint); drop listen=none / OWNKERNEL_LISTEN=none")
    return replace(settings, listen=websocket_listen(settings.listen))


def _serve_websocket(node: Any, host: str, port: int) -> Any:
    from ownkernel.serverext.standalone import WebSocketEndpoint

    try:
        endpoint = WebSocketEndpoint(node, host, port)
    except (OSError, RuntimeError) as exc:
        raise CliError(str(exc)) from None
    log.info("relay WebSocket endpoint on %s:%d (/ownkernel/relay)", host or "*", endpoint.port)
    return endpoint


def cmd_status(args: argparse.Namespace) -> int:
    from ownkernel.cli_contact import _control, _print_live_status

    settings = _settings(args, network=False)
    print(f"profile:     {settings.profile}")
    print(f"profile dir: {settings.profile_dir()}")
    live = _control(args, "status", timeout=10)
    if live is not None:
        _print_live_status(live)
        return 0
    try:
        node = _open_node(settings, network=False)
    except CliError as exc:
        if "in use" in str(exc):
            # A running node without a control socket (an older version, or a
            # Node(..., control=False)): say so, that *is* the status.
            print(f"state:       in use: {exc}")
            return 0
        raise
    with node:
        from ownkernel.kernel import cells

        docs = list(cells.iter_docs(node))
        # Not networked (a status must not bind ports): peers as the store knows them.
        peers = node.store.peers() if hasattr(node, "store") else []
        print(f"id:          {_ident(node)}")
        print(f"name:        {getattr(node, 'name', '') or '-'}")
        print(f"addresses:   {', '.join(_last_addresses(node)) or '- (never listened)'}")
        print(f"docs:        {len(docs)}")
        for d in docs:
            print(f"  {cells.doc_id(d)[:12]}  {cells.doc_title(d) or '(untitled)'}")
        print(f"peers known: {len(peers)}")
        for peer in peers:
            print(f"  {peer['id'].hex()[:12]}  {peer.get('name') or '-'}")
    return 0


def cmd_invite(args: argparse.Namespace) -> int:
    from ownkernel.cli_contact import _control
    from ownkernel.kernel import cells

    live = _control(args, "invite", doc=" ".join(args.doc), write=not args.read)
    if live is not None:  # the running node: its live addresses go in the token
        print(live["token"])
        return 0
    args.doc = " ".join(args.doc)
    with _open_node(_settings(args, network=False), network=False) as node:
        try:
            doc = cells.find_doc(node, args.doc)
        except cells.DocNotFound as exc:
            same = [d.id for d in node.docs() if d.title == args.doc]
            if len(same) > 1:  # as the running node says it: ids and authors
                raise CliError(node.describe_docs(same, args.doc)) from None
            raise CliError(str(exc)) from None
        # No network here, so the node has no live address: put in the ones
        # it listens on when it runs (sticky port), so the token is dialable.
        print(node.invite(doc, write=not args.read, addresses=_last_addresses(node)))
    return 0


def cmd_join(args: argparse.Namespace) -> int:
    from ownkernel.cli_contact import _control
    from ownkernel.kernel import cells

    live = _control(args, "join", timeout=max(args.timeout, 0) + 30, token=args.token,
                    wait=args.timeout)
    if live is not None:  # the running node joins: it keeps syncing afterwards
        if not live.get("received") and args.timeout > 0:
            raise CliError(f"joined {live['doc'][:12]} but no peer sent its content within "
                           f"{args.timeout:g} s (is the inviter online?); the running node "
                           f"keeps trying")
        print(live["doc"])
        return 0
    # Networked with the profile's own settings (its usual listen address, so
    # the sticky port recorded for it stays the same).
    with _open_node(_settings(args, network=True)) as node:
        try:
            doc = node.join(args.token, timeout=0)
        except (ValueError, PermissionError) as exc:
            raise CliError(f"cannot join: {' '.join(str(exc).split())}") from None
        if args.timeout > 0 and getattr(node, "network", None) is not None:
            try:
                node.join(args.token, timeout=args.timeout, strict=True)
            except TimeoutError:
                raise CliError(
                    f"joined {cells.doc_id(doc)[:12]} but no peer sent its content within "
                    f"{args.timeout:g} s (is the inviter online?)") from None
            _settle(doc)
        print(cells.doc_id(doc))
    return 0


def _settle(doc: Any, quiet: float = 0.3, limit: float = 3.0) -> None:
    """Wait (bounded) until the doc's version stops moving: the fetch is complete."""
    end = time.monotonic() + limit
    last = dict(doc.version)
    still = time.monotonic()
    while time.monotonic() < end:
        time.sleep(0.05)
        now = dict(doc.version)
        if now != last:
            last, still = now, time.monotonic()
        elif time.monotonic() - still >= quiet:
            return


# -- doctor ---------------------------------------------------------------------
def body_decoders() -> tuple[Any, Any]:
    """Decode a stored change / snapshot as the node would (after unsealing)."""
    from ownkernel.crdt import Doc
    from ownkernel.crdt.codec import decode
    from ownkernel.store import open_sealed

    def plain(row: Any, data: bytes) -> bytes:
        return open_sealed(row.key, data) if row.encrypted else data

    return (lambda row, data: decode(plain(row, data)),
            lambda row, data: Doc.load(plain(row, data)))


def cmd_doctor(args: argparse.Namespace) -> int:
    from ownkernel.store import DB_FILE, ProfileLock, ProfileLockedError, Store, StoreError
    from ownkernel.store.doctor import audit_store, quarantine

    profile = _settings(args, network=False).profile_dir()
    db_path = profile / DB_FILE
    if not db_path.exists():
        raise CliError(f"no database {db_path}: nothing to check (is the profile right? "
                       f"see `ownkernel status --profile ...`)")
    lock = ProfileLock(profile)
    try:
        lock.acquire()
    except ProfileLockedError as exc:
        raise CliError(f"{exc} `ownkernel doctor` needs the profile to itself: stop that "
                       f"node or kernel, then run it again.") from None
    except StoreError as exc:
        raise CliError(str(exc)) from None
    try:
        try:
            store = Store(db_path, check=False)  # doctor runs the full check itself
        except StoreError as exc:
            print(f"database {db_path}: cannot be opened: {' '.join(str(exc).split())}")
            return 1
        with store:
            decode_change, decode_snapshot = body_decoders()
            report = audit_store(store, decode_change=decode_change,
                                 decode_snapshot=decode_snapshot)
            if args.quarantine:
                quarantine(store, report)
            me = store.get_setting("node_id")
        for line in report.lines():
            print(line)
        mine = [d for d in report.docs for p in d.problems
                if p.quarantined and p.what == "change" and p.actor == me]
        if mine:
            print("note: changes made by this node were quarantined; if no peer holds "
                  "them, its next edits reuse their seq numbers and peers that do hold "
                  "them will refuse those edits")
        elif not report.ok and not args.quarantine and any(
                p.pinpointed for d in report.docs for p in d.problems):
            print("run again with --quarantine to set the damaged rows aside (they are "
                  "kept) so the rest loads")
        return 0 if report.ok else 1
    finally:
        lock.release()


# -- console --------------------------------------------------------------------
def cmd_console(args: argparse.Namespace) -> int:
    import importlib.util

    from jupyter_client.kernelspec import KernelSpecManager

    # Run the console module with *this* interpreter, not `jupyter-console` from PATH:
    # outside an activated venv PATH has no (or another env's) script.
    if importlib.util.find_spec("jupyter_console") is None:
        raise CliError(f"jupyter console is not installed for {sys.executable}: "
                       f"{sys.executable} -m pip install jupyter-console")
    if args.kernel not in KernelSpecManager().find_kernel_specs():
        raise CliError(f"no kernelspec {args.kernel!r}: run `ownkernel install` first")
    argv = [sys.executable, "-m", "jupyter_console", "--kernel", args.kernel, *args.extra]
    os.execv(sys.executable, argv)  # replaces this process; returns only on failure
    return 1  # pragma: no cover


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


# -- parser ---------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from ownkernel import __version__

    p = _Parser(prog="ownkernel", description="A local-first peer-to-peer node in your "
                "Jupyter kernel.")
    p.add_argument("--version", action="version", version=f"ownkernel {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    s = sub.add_parser("install", help="install the Jupyter kernelspec",
                       description="Install the 'ownkernel' kernelspec. Default: into the "
                       "active virtual env, else for the current user.")
    where = s.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="for the current user")
    where.add_argument("--sys-prefix", action="store_true", help="into sys.prefix (this env)")
    where.add_argument("--prefix", metavar="P", help="into P/share/jupyter/kernels")
    s.add_argument("--name", default="ownkernel", metavar="N", help="kernelspec name")
    s.add_argument("--display-name", default="ownkernel (Python 3)", metavar="D",
                   help="name shown in Jupyter's launcher")
    s.set_defaults(func=cmd_install)

    s = sub.add_parser("node", help="run a headless node (bootstrap/relay)",
                       description="Run a node without a kernel until SIGINT/SIGTERM. Logs "
                       "(peers joining and leaving) go to stderr; stdout gets one line "
                       "'ready <id> <address>...' once it runs.")
    s.add_argument("--profile", help="profile name or directory (default: OWNKERNEL_PROFILE "
                   "or 'default')")
    s.add_argument("--listen", action="append", metavar="ADDR",
                   help="endpoint to listen on, e.g. tcp://127.0.0.1:7700 (repeatable)")
    s.add_argument("--bootstrap", action="append", metavar="ADDR",
                   help="node to contact first (repeatable)")
    s.add_argument("--relay", action="store_true", help="forward between peers")
    s.add_argument("--websocket", metavar="HOST:PORT",
                   help="also serve the node at ws://HOST:PORT/ownkernel/relay, for peers "
                   "that only get out over HTTP(S) (see docs/relay.md)")
    s.add_argument("--advertise", action="append", metavar="HOST[:PORT]",
                   help="address peers should dial (behind NAT/port forwarding; repeatable; "
                   "default: every interface address when listening on 0.0.0.0; also "
                   "OWNKERNEL_ADVERTISE)")
    s.add_argument("--name", help="name shown to peers")
    s.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    s.set_defaults(func=cmd_node)

    s = sub.add_parser("console", help="jupyter console with the ownkernel kernel",
                       description="Run `jupyter console --kernel ownkernel`; extra arguments "
                       "go to jupyter console.")
    s.add_argument("--kernel", default="ownkernel", help="kernelspec name")
    s.add_argument("extra", nargs=argparse.REMAINDER, help="arguments for jupyter console")
    s.set_defaults(func=cmd_console)

    s = sub.add_parser("status", help="profile, id, docs and peers known",
                       description="Show a profile's node: id, docs and peers known (live, "
                       "from the running node, when one holds the profile).")
    s.add_argument("--profile", help="profile name or directory")
    s.set_defaults(func=cmd_status)

    s = sub.add_parser("doctor", help="check a profile's database; set damage aside",
                       description="Check PROFILE's database (not in use by a node): SQLite "
                       "integrity, every document's hash chains and signatures, that every "
                       "stored change and snapshot decodes. Prints a report per document. "
                       "Exit code 0: healthy, 1: problems found (or cannot check).")
    s.add_argument("profile", nargs="?", metavar="PROFILE",
                   help="profile name or directory (default: OWNKERNEL_PROFILE or "
                   "'default')")
    s.add_argument("--quarantine", action="store_true",
                   help="move damaged rows/snapshots into the quarantine table (kept, not "
                   "deleted) so the rest of each document loads")
    s.set_defaults(func=cmd_doctor)

    s = sub.add_parser("invite", help="print an invite token for a document",
                       description="Print an invite token for DOC (id, id prefix or title; "
                       "a title needs no quotes). Asks the profile's running node when there "
                       "is one (its live addresses go into the token).")
    s.add_argument("doc", metavar="DOC", nargs="+")
    s.add_argument("--read", action="store_true", help="read-only access")
    s.add_argument("--profile", help="profile name or directory")
    s.set_defaults(func=cmd_invite)

    s = sub.add_parser("join", help="join a document from an invite token",
                       description="Join the document of TOKEN: connect to the inviter, "
                       "fetch the document, print its id. Fails (exit 1) if nothing "
                       "arrives within the timeout. When the profile's node runs (a kernel, "
                       "`ownkernel node`), that node joins.")
    s.add_argument("token", metavar="TOKEN")
    s.add_argument("--profile", help="profile name or directory")
    s.add_argument("--timeout", type=float, default=15.0, metavar="S",
                   help="seconds to wait for the content (default 15; 0: record the "
                   "invite only, fetch later)")
    # Networking settings come from the profile's config and OWNKERNEL_* like a
    # kernel's; these attributes keep _settings() uniform.
    s.set_defaults(name=None, listen=None, bootstrap=None, relay=False)
    s.set_defaults(func=cmd_join)

    from ownkernel.cli_contact import add_contact_commands

    add_contact_commands(sub)

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
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and getattr(args, "command", None) == "lab":
        args.extra = unknown  # JupyterLab's own options
    elif unknown:
        parser.parse_args(argv)  # the usual one-line "unrecognized arguments" error
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except CliError as exc:
        print(f"ownkernel: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if os.environ.get("OWNKERNEL_DEBUG"):
            raise
        text = " ".join(str(exc).split()) or type(exc).__name__
        print(f"ownkernel: error: {type(exc).__name__}: {text}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
