"""`%own` commands about this node and its network: status, whoami, name, peers, pair,
devices, connect, log."""

from __future__ import annotations

from typing import Any

from IPython.core.error import UsageError

from ownkernel.kernel import cells
from ownkernel.kernel.display import Fields, Message, Table, ago, fmt
from ownkernel.kernel.magics_base import CONNECT_TIMEOUT, JOIN_TIMEOUT, MagicsBase, command_parser
from ownkernel.kernel.nodehost import NetEvent


class NodeCommands(MagicsBase):
    """%own status, whoami, name, peers, pair, devices, connect, log."""

    def _cmd_status(self, args: list[str]) -> Fields:
        command_parser("status").parse_args(args)
        host = self.host
        if host is None:
            raise UsageError("this kernel has no node (the %own magics need OwnKernel)")
        s = host.settings
        pairs: list[tuple[str, Any]] = [("state", host.state)]
        if host.error:
            pairs.append(("problem", host.error))
        pairs.append(("profile", host.profile or s.profile))
        pairs.append(("profile dir", host.profile_dir or s.profile_dir()))
        node = host.node
        if node is not None:
            pairs += [("id", _field(node, "id")), ("name", _field(node, "name"))]
            networked = getattr(node, "network", None) is not None
            addrs = list(getattr(node, "addresses", None) or [])
            if not networked:
                pairs.append(("listening", "no (networking off)"))
            else:
                pairs.append(("listening", addrs or "no (dials out only)"))
            try:
                peers = _peer_list(node)
            except (RuntimeError, TimeoutError) as exc:
                # The status panel must show even when the network thread is stuck.
                peers = None
                pairs.append(("peers", f"unavailable: {exc or type(exc).__name__}"))
            if peers is None:
                if not any(k == "peers" for k, _ in pairs):
                    pairs.append(("peers", "networking not available in this version"))
            else:
                online = sum(1 for p in peers if _field(p, "online"))
                # No peers is a normal state, not a problem: say how to get some.
                hint = "" if peers else " (%own connect ADDR, or %own join TOKEN)"
                pairs.append(("peers", f"{online} online, {len(peers)} known{hint}"))
            pairs.append(("docs", sum(1 for _ in cells.iter_docs(node))))
            stats = node.stats() if callable(getattr(node, "stats", None)) else {}
            if stats:
                pairs.append(("changes", f"{stats.get('commits', 0)} committed here, "
                              f"{stats.get('accepted', 0)} accepted, "
                              f"{stats.get('rejected_total', 0)} rejected"))
        if host.ready_at and host.started_at:
            pairs.append(("start time", f"{host.ready_at - host.started_at:.2f} s"))
        if s.bootstrap:
            pairs.append(("bootstrap", s.bootstrap))
        pairs.append(("config", list(s.sources) or "none (defaults and OWNKERNEL_* only)"))
        return Fields(pairs, title="ownkernel node")

    def _cmd_whoami(self, args: list[str]) -> Fields:
        command_parser("whoami").parse_args(args)
        node = self._node()
        assert self.host is not None
        return Fields(
            [
                ("id", _field(node, "id")),
                ("short id", _field(node, "short_id")),
                ("name", _field(node, "name")),
                *([("user", f"{u.short_id} (devices: %own devices)")]
                  if (u := getattr(node, "user", None)) is not None else []),
                ("profile", self.host.profile),
            ]
        )

    def _cmd_name(self, args: list[str]) -> Fields:
        """Peers see a new name or colour within a second (widgets/ui docs)."""
        ns = command_parser("name", ("name", {"metavar": "NAME", "nargs": "*"}),
                     ("--color", {"metavar": "#RRGGBB"})).parse_args(args)
        node = self._node()
        if ns.name:
            node.name = " ".join(ns.name)
        if ns.color:
            node.color = ns.color
        return Fields([("name", node.name), ("color", getattr(node, "color", None))])

    def _cmd_peers(self, args: list[str]) -> Table:
        command_parser("peers").parse_args(args)
        peers = _peer_list(self._node())
        if peers is None:
            raise UsageError("%own peers: networking is not available in this version of Node")
        rows = []
        for p in peers:
            latency = _field(p, "latency")
            rows.append(
                [
                    str(fmt(_field(p, "short_id", "id")))[:12],
                    _field(p, "name"),
                    _field(p, "addresses", "address"),
                    "yes" if _field(p, "online") else "no",
                    f"{latency * 1000:.1f} ms" if isinstance(latency, (int, float)) else "-",
                    ago(_field(p, "last_seen")),
                    _field(p, "route") or "-",  # direct <address> | via relay <name>
                ]
            )
        cols = ["id", "name", "addresses", "online", "latency", "last seen", "route"]
        return Table(cols, rows, title="peers", empty="no peers yet (%own connect ADDR|TOKEN)")

    # -- users and devices (issue #13) ---------------------------------------------
    def _cmd_pair(self, args: list[str]) -> Any:
        ns = command_parser("pair", ("token", {"nargs": "?", "metavar": "TOKEN"})).parse_args(args)
        node = self._networked("pair")
        if ns.token:
            u = node.pair_with(ns.token, timeout=JOIN_TIMEOUT)
            return Message(f"{u.name} ({u.short_id}); its documents follow",
                           "this kernel is now a device of user ")
        return _PairMessage(node.pair(), "pairing token (one use, valid 10 min; paste it "
                            "into `%own pair TOKEN` or `ownkernel pair TOKEN` on the new "
                            "device):\n")

    def _cmd_devices(self, args: list[str]) -> Table:
        command_parser("devices").parse_args(args)
        node = self._node()
        rows = [[d.id.hex()[:12] + (" (this)" if d.id == node.id else ""), d.name,
                 ago(d.last_seen), "revoked" if d.revoked else "-"] for d in node.devices()]
        return Table(["device", "name", "last seen", "revoked"], rows,
                     title=f"devices of {node.user.name}", empty="no devices")
    def _cmd_connect(self, args: list[str]) -> Any:
        p = command_parser("connect", ("target", {"metavar": "ADDR|TOKEN"}))
        p.add_argument("--timeout", type=float, default=CONNECT_TIMEOUT, metavar="S")
        ns = p.parse_args(args)
        node = self._networked("connect")
        try:
            peer = node.connect(ns.target, timeout=ns.timeout)
        except TimeoutError:
            # Not an error: the node keeps dialing with back-off, and an
            # unreachable peer is a normal offline-first state.
            return Message(f"not reachable within {ns.timeout:g} s; still trying in the "
                           "background (see %own peers, %own log)", "connect: ")
        except ValueError as exc:
            raise UsageError(f"%own connect: {exc}") from None
        if peer is None:
            return Message(ns.target, "connecting in the background to ")
        return peer
    def _cmd_log(self, args: list[str]) -> Table:
        p = command_parser("log")
        p.add_argument("n", nargs="?", type=int, default=20, metavar="N")
        ns = p.parse_args(args)
        assert self.host is not None
        notes, net = self.host.recent()
        events = list(notes)
        titles: dict[bytes, str] = {}
        node = self.host.node
        for e in net:
            events.append((e.at, _describe(e, node, titles)))
        events.sort(key=lambda e: e[0])
        rows = [[ago(ts), text] for ts, text in events[-ns.n:]] if ns.n > 0 else []
        return Table(["when", "event"], rows, title="recent events", empty="no events yet")


class _PairMessage(Message):
    """A pairing token with its QR code (a phone's notebook can scan it)."""

    def _repr_html_(self) -> str:
        import base64

        from ownkernel.apps.workshop import qr_png

        png = qr_png(self.text)
        img = "" if png is None else (
            '<br><img alt="QR code of the pairing token" style="width:220px;'
            'image-rendering:pixelated" src="data:image/png;base64,'
            + base64.b64encode(png).decode() + '">')
        return super()._repr_html_() + img


def _field(obj: Any, *names: str) -> Any:
    for n in names:
        if isinstance(obj, dict) and n in obj:
            return obj[n]
        value = getattr(obj, n, None)
        if value is not None:
            return value() if callable(value) and n in ("online",) else value
    return None


def _peer_list(node: Any) -> list[Any] | None:
    peers = getattr(node, "peers", None)
    if peers is None:
        return None
    if callable(peers):
        peers = peers()
    return list(peers.values()) if isinstance(peers, dict) else list(peers)


def _describe(e: NetEvent, node: Any, titles: dict[bytes, str]) -> str:
    """One log line for a network event (doc titles resolved here, on the main thread)."""
    short = e.peer.hex()[:8] if e.peer else "?"
    who = f"{e.name} ({short})" if e.name else short
    if e.kind == "peer_joined":
        return f"peer joined: {who}"
    if e.kind == "peer_left":
        return f"peer left: {who}"
    doc = e.doc.hex()[:12] if e.doc else "?"
    if e.doc is not None and node is not None:
        if e.doc not in titles:
            try:
                titles[e.doc] = str(node.open(e.doc).title or "")
            except Exception:  # noqa: BLE001 - a doc we can't open still gets a line
                titles[e.doc] = ""
        if titles[e.doc]:
            doc = f"{titles[e.doc]!r} ({doc})"
    n = f"{e.count} changes" if e.count > 1 else "a change"
    return f"{n} to {doc} from {who}"

