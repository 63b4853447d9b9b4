"""First contact (issue #11 §1-2): the parts of ``Node`` that get two people
talking, kept in their own module so the rest of the Node stays as it was.

- ``join(token)`` waits (bounded) for the first sync and says who it tried;
- ``doc(title)`` opens or creates (idempotent notebooks), ambiguous titles are
  listed with ids and authors;
- ``peers`` with the route to each peer (direct, or via a relay);
- what a node advertises (``advertise=``, ``OWNKERNEL_ADVERTISE``, interface
  addresses for wildcard binds: config.py) and that temporary profiles stay out
  of the address book;
- the control socket the CLI talks to (control.py).

Functions of a ``Node`` (its lock, store, replica and network); the Node's
methods ``join``, ``doc``, ``describe_docs`` and ``peers`` call them.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ownkernel.node.config import NetConfig, Peer, env_advertise
from ownkernel.node.grants import Invite
from ownkernel.store.identity import short_id

if TYPE_CHECKING:
    from ownkernel.node.handle import DocHandle
    from ownkernel.node.node import Node

__all__ = ["JOIN_WAIT", "UNLISTED_GRACE", "AmbiguousDoc", "JoinWarning"]

log = logging.getLogger("ownkernel.node.node")

# How long ``node.join(token)`` waits for the first sync by default: long
# enough for a reachable inviter on a LAN or a relay, short enough that a cell
# whose inviter is offline comes back quickly (with a warning).
JOIN_WAIT = 5.0
# An offline peer that is not in the address book (a temporary profile, a
# dial-only node) stays in ``node.peers`` this long after it left during this
# run, so "who was just here" shows; then it is dropped (it cannot be dialed).
UNLISTED_GRACE = 600.0


class JoinWarning(UserWarning):
    """``node.join`` returned before the document's content arrived (nobody reachable)."""


class AmbiguousDoc(KeyError):
    """Several documents match a title; the message lists them with ids and authors."""

    def __str__(self) -> str:  # KeyError would show the message quoted
        return str(self.args[0]) if self.args else ""


def join(node: Node, token: str, timeout: float | None = JOIN_WAIT, *,
         strict: bool = False) -> DocHandle:
    """Join the doc an invite token grants, connect to its inviter, fetch the doc.

    Waits (up to ``timeout`` seconds, default ``JOIN_WAIT``) until the first
    sync has landed, with all that the peers said they held then and a moment
    without anything new (at most ``SETTLE_MAX``), so the next line sees the
    content. If nobody who has the doc was reachable in that time it warns
    (``JoinWarning``: who was tried) and returns the handle anyway: the content
    arrives in the background when a peer comes online. ``strict=True`` raises
    ``TimeoutError`` instead; ``timeout=0``/``None`` returns at once. Joining
    again is harmless.
    """
    handle = node._join_local(token)
    if node._net is None:
        return handle  # a local node: the invite is recorded, nothing to wait for
    node._net.connect(token, timeout=None)
    if not timeout or node._has_content(handle.id):
        return handle
    end = time.monotonic() + timeout
    while not node._has_content(handle.id):
        if node._closed or node._net is None:
            return handle
        if time.monotonic() > end:
            msg = join_trouble(node, handle, token, timeout)
            if strict:
                raise TimeoutError(msg)
            warnings.warn(msg, JoinWarning, stacklevel=3)  # the caller of Node.join
            log.warning("%s", msg)
            return handle
        time.sleep(0.01)
    _settle(node, handle.id, end)
    return handle


# After the first part of a sync lands: what else to wait for (see _settle).
SETTLE_QUIET = 0.2  # seconds without anything new ...
SETTLE_MAX = 1.0  # ... but at most this long, for a doc someone keeps typing into


def _settle(node: Node, doc_id: bytes, end: float) -> None:
    """A first sync can land in parts. Wait (until ``end``) for what the peers said
    they held when the first part landed; then, since a relay may not have heard
    all of the author's changes yet when it answered (it passes them on as they
    were made), until nothing new arrived for SETTLE_QUIET seconds, for at most
    SETTLE_MAX: a doc someone keeps typing into never goes quiet."""
    net = node._net
    if net is None:
        return
    try:
        target = net.peers_hold(doc_id)
    except RuntimeError:  # the network stopped meanwhile
        return
    while time.monotonic() < end and not node._closed:
        have = node.replica.version(doc_id)
        if all(have.get(a, 0) >= s for a, s in target.items()):
            break
        time.sleep(0.01)
    stop = min(end, time.monotonic() + SETTLE_MAX)
    last, quiet_since = node.replica.version(doc_id), time.monotonic()
    while time.monotonic() - quiet_since < SETTLE_QUIET and time.monotonic() < stop:
        if node._closed:
            return
        time.sleep(0.02)
        now = node.replica.version(doc_id)
        if now != last:
            last, quiet_since = now, time.monotonic()


def join_trouble(node: Node, handle: DocHandle, token: str, timeout: float) -> str:
    """Why a join's content did not arrive: who we tried, whether they answered."""
    inv = Invite.parse(token)
    who = short_id(inv.inviter)
    online = {p.id for p in node.peers if p.online}
    head = f"document {handle.short_id} ({handle.title!r}) not received within {timeout:g} s"
    tail = "; it syncs in the background once a peer that has it is online"
    if inv.inviter in online:
        return f"{head}: the inviter {who} is connected but has not sent it yet{tail}"
    where = ", ".join(a.split("#")[0] for a in inv.addresses) or "no address in the token"
    others = f" (connected to {len(online)} other peer(s))" if online else ""
    return f"{head}: nobody who has it was reachable: inviter {who} at {where}{others}{tail}"

def doc(node: Node, title: str, *, encrypted: bool = False) -> DocHandle:
    """The document titled ``title``: opened when one has it, created when none does.

    Re-running a notebook therefore reuses its documents instead of making a
    new one each time. When several documents have that title, raises
    ``AmbiguousDoc`` listing them with ids and authors (open one by id).
    """
    if not isinstance(title, str) or not title.strip():
        raise ValueError("node.doc(title): a non-empty title is required "
                         "(node.new_doc() makes an untitled document)")
    with node._lock:
        node._check_open()
        rows = [r for r in node.store.documents() if r.title == title]
        if len(rows) > 1:
            raise AmbiguousDoc(ambiguous(node, title, rows))
        if rows:
            return node._handle(rows[0].id)
        return node.new_doc(title=title, encrypted=encrypted)

def ambiguous(node: Node, ref: str, rows: list[Any]) -> str:
    names = {p["id"]: p.get("name") for p in node.store.peers()}
    names[node.id] = f"{node.name} (you)"
    items = [f"{r.id.hex()[:12]} {r.title!r} by {names.get(r.owner) or '?'} "
             f"({short_id(r.owner)})" for r in rows[:8]]
    more = f" and {len(rows) - 8} more" if len(rows) > 8 else ""
    return (f"{ref!r} is ambiguous: {len(rows)} documents match: {'; '.join(items)}{more}. "
            f"Open one by id (or more of its digits), e.g. "
            f"node.open({rows[0].id.hex()[:12]!r})")

def describe_docs(node: Node, ids: Iterable[bytes], ref: str) -> str:
    """The listing ``AmbiguousDoc`` shows, for other callers (the %own magics)."""
    with node._lock:
        rows = [r for r in node.store.documents() if r.id in set(ids)]
        return ambiguous(node, ref, rows)

def peers_with_routes(node: Node) -> list[Peer]:
    """On the network thread: peers with how we reach them (see ``peers``)."""
    net = node._net
    assert net is not None
    assert net.book is not None
    listed = net.book.entries()
    # Offline peers we could never dial (temporary profiles, dial-only nodes)
    # or whose book entry expired are not listed (after a grace, if they
    # left during this run): re-running a notebook must not pile up dead
    # "neighbours". They reappear when they connect.
    now = time.monotonic()
    peers = [p for p in net.directory.all() if p.online or p.id in listed
             or now - node._left.get(p.id, -1e18) < UNLISTED_GRACE]
    relays = [p for p in peers if p.relay and p.online]
    out = []
    for p in peers:
        route = ""
        if p.online:
            link = net.by_peer.get(p.id)
            dial = net.dialing.planner.dials.get(p.id)
            if link is not None and link.conn[0] == "out" and dial and dial.addresses:
                addr = dial.addresses[dial.idx % len(dial.addresses)]
                route = f"direct {addr.split('#')[0]}"
            else:
                route = "direct (inbound)"
        elif relays and not p.relay:
            route = f"via relay {relays[0].name or relays[0].short_id}"
        out.append(dataclasses.replace(p, route=route))
    return out

def configure(node: Node, cfg: NetConfig, advertise: Any) -> None:
    extra = env_advertise()
    if advertise is not None or extra:
        given = [advertise] if isinstance(advertise, str) else list(advertise or [])
        cfg.advertise = list(dict.fromkeys([*(cfg.advertise or []), *given, *extra]))
    if node._temp:
        # A temporary profile is gone when it closes: it never enters the
        # replicated address book, so nobody dials (or passes on) a dead node.
        cfg.listed = False

def remember_addresses(node: Node) -> None:
    """Keep what we advertise: an invite made offline (`ownkernel invite`) carries it."""
    if node._net is None or node._temp:
        return
    if node.store.get_setting("net.advertised") != node.addresses:  # usually unchanged
        node.store.set_setting("net.advertised", node.addresses)

def start_control(node: Node) -> None:
    from ownkernel.node.control import ControlServer, node_handlers

    try:
        node._control = ControlServer(node, node_handlers(node))
    except OSError as exc:  # the node works without it; the CLI says why it can't talk
        log.warning("no control socket for profile %s: %s", node.profile, exc)

def stop_control(node: Node) -> None:
    ctl, node._control = node._control, None
    if ctl is not None:
        ctl.close()
