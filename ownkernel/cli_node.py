"""`ownkernel node` (a headless node, optionally a relay WebSocket endpoint) and
`ownkernel status` (live from the running node, else from the profile)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from typing import Any

from ownkernel.cli_common import CliError, cli_settings, control, ident, last_addresses, open_node

log = logging.getLogger("ownkernel")


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
    settings = cli_settings(args, network=True)
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
    node = open_node(settings, strict=True)
    endpoint = None
    try:
        if getattr(node, "network", None) is not None:
            _log_network_events(node)
        addrs = list(getattr(node, "addresses", None) or [])
        if where is not None:
            endpoint = _serve_websocket(node, *where)
            addrs = [a for a in (endpoint.address,) if a] + addrs
        log.info("node %s (%s) on profile %s%s", ident(node)[:12], getattr(node, "name", ""),
                 settings.profile_dir(), f", listening on {', '.join(addrs)}" if addrs else "")
        # One stdout line scripts can wait for: id, then the addresses to bootstrap from.
        print(" ".join(["ready", ident(node), *addrs]), flush=True)
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

    settings = cli_settings(args, network=False)
    print(f"profile:     {settings.profile}")
    print(f"profile dir: {settings.profile_dir()}")
    live = control(args, "status", timeout=10)
    if live is not None:
        _print_live_status(live)
        return 0
    try:
        node = open_node(settings, network=False)
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
        print(f"id:          {ident(node)}")
        print(f"name:        {getattr(node, 'name', '') or '-'}")
        print(f"addresses:   {', '.join(last_addresses(node)) or '- (never listened)'}")
        print(f"docs:        {len(docs)}")
        for d in docs:
            print(f"  {cells.doc_id(d)[:12]}  {cells.doc_title(d) or '(untitled)'}")
        print(f"peers known: {len(peers)}")
        for peer in peers:
            print(f"  {peer['id'].hex()[:12]}  {peer.get('name') or '-'}")
    return 0



def _print_live_status(st: dict[str, Any]) -> None:
    peers = st.get("peers") or []
    print(f"state:       running (pid {st.get('pid')}; answered through its control socket)")
    print(f"id:          {st['id']}")
    print(f"name:        {st.get('name') or '-'}")
    print(f"addresses:   {', '.join(st.get('addresses') or []) or '- (not listening)'}")
    print(f"docs:        {len(st.get('docs') or [])}")
    for d in st.get("docs") or []:
        print(f"  {d['id'][:12]}  {d['title'] or '(untitled)'}")
    online = [p for p in peers if p.get("online")]
    print(f"peers:       {len(online)} online, {len(peers)} known")
    for p in peers:
        state = p.get("route") or ("online" if p.get("online") else "offline")
        print(f"  {p['id'][:12]}  {p.get('name') or '-'}  {state}")


def add_commands(sub: Any) -> None:
    """node, status."""
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

    s = sub.add_parser("status", help="profile, id, docs and peers known",
                       description="Show a profile's node: id, docs and peers known (live, "
                       "from the running node, when one holds the profile).")
    s.add_argument("--profile", help="profile name or directory")
    s.set_defaults(func=cmd_status)
