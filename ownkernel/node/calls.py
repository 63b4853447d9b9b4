"""Calls between notebooks (issue #14): who is in a call, and which signals to send.

A call belongs to a doc. Media flows browser to browser (WebRTC, a mesh of up to
``MAX_MESH`` participants); the node only carries the set-up: ``signal``
messages (net/session.py) over the authenticated session to one peer at a
time, never stored, never forwarded. Every participant is a node, so the node
id is the participant id.

Two parts:

- :class:`CallState` is pure (no I/O, no clock): it takes what happened (we
  join or leave, a peer signalled, a peer went away) and returns actions
  (:class:`Send` a signal, :class:`MakeOffer`, :class:`Deliver` an SDP to the
  local media end, :class:`Hangup`, :class:`Roster`, :class:`Full`).
- :class:`Calls` is the thin layer on the node's network loop: it checks with
  the admission gate that the sender may read the doc (a non-member's signal
  is dropped and counted, ``signal-refused``), sends what the state says and
  hands the rest to the local listener (the widget or the aiortc bot).

Set-up of one pair: the newcomer sends ``join`` to every connected peer that
may read the doc; a member answers ``present``; the one of the two with the
smaller node id makes the offer (so two participants joining at once never
both offer: no glare); the other answers. Full SDP with its candidates, no
trickle: four messages per pair.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ownkernel.node.network import Link, NodeNetwork

log = logging.getLogger("ownkernel.calls")

__all__ = ["MAX_MESH", "Action", "CallState", "Calls", "Deliver", "Full", "Hangup", "MakeOffer",
           "Roster", "Send", "calls_of", "ice_servers"]

# A mesh sends every stream to every other participant: at 4 that is 3 uploads
# of camera video per browser, about what a laptop and a home uplink carry.
MAX_MESH = 4
MEDIA_KINDS = frozenset({"offer", "answer", "candidate"})
SWEEP = 0.5  # seconds between looks for members that became reachable


@dataclass(frozen=True)
class Action:
    pass


@dataclass(frozen=True)
class Send(Action):
    """Send signal ``kind`` with ``data`` to peer ``to``."""

    to: bytes
    kind: str
    data: str = ""


@dataclass(frozen=True)
class MakeOffer(Action):
    """The local media end should make an offer to ``peer`` (it has the smaller id)."""

    peer: bytes


@dataclass(frozen=True)
class Deliver(Action):
    """An offer, answer or candidate from call member ``peer`` for the local media end."""

    peer: bytes
    kind: str
    data: str


@dataclass(frozen=True)
class Hangup(Action):
    """Close the connection with ``peer``: ``left`` (it said so), ``gone`` (its
    session dropped), ``rejoined`` (it joined again: a fresh connection follows)."""

    peer: bytes
    reason: str


@dataclass(frozen=True)
class Roster(Action):
    """Who is in the call with us now (remote members, in joining order)."""

    members: tuple[bytes, ...]


@dataclass(frozen=True)
class Full(Action):
    """Our join was refused: the call already has ``MAX_MESH`` participants."""

    peer: bytes


@dataclass(frozen=True)
class Dropped(Action):
    """A signal that made no sense in our state (counted, not acted on)."""

    peer: bytes
    kind: str
    why: str


class CallState:
    """One call (one doc) as this node sees it. Pure: feed events, get actions."""

    def __init__(self, me: bytes, max_size: int = MAX_MESH) -> None:
        if max_size < 2:
            raise ValueError(f"a call needs room for 2 participants, not {max_size}")
        self.me = me
        self.max_size = max_size
        self.joined = False
        self.members: dict[bytes, None] = {}  # remote members, in order of arrival
        self.asked: set[bytes] = set()  # peers we sent our join to (since they connected)

    def _roster(self) -> Roster:
        return Roster(tuple(self.members))

    def _add(self, peer: bytes) -> list[Action]:
        self.members[peer] = None
        out: list[Action] = [self._roster()]
        if self.me < peer:  # the smaller id offers: never both (no glare)
            out.append(MakeOffer(peer))
        return out

    def join(self, reachable: Iterable[bytes]) -> list[Action]:
        """We join: tell every connected peer that may read the doc."""
        if self.joined:
            return []
        self.joined = True
        told = [p for p in reachable if p != self.me]
        self.asked.update(told)
        return [Send(p, "join") for p in told] + [self._roster()]

    def leave(self) -> list[Action]:
        if not self.joined:
            return []
        self.joined = False
        self.asked.clear()
        out: list[Action] = []
        for p in self.members:
            out += [Send(p, "leave"), Hangup(p, "left")]
        self.members.clear()
        return [*out, self._roster()]

    def peer_online(self, peer: bytes) -> list[Action]:
        """A peer that may read the doc is connected (after our join, or again):
        tell it once per connection. Called again and again (a sweep) because
        "may read" can turn true after the connection opened (grants follow hello)."""
        if not self.joined or peer in self.members or peer in self.asked or peer == self.me:
            return []
        self.asked.add(peer)
        return [Send(peer, "join")]

    def peer_gone(self, peer: bytes) -> list[Action]:
        self.asked.discard(peer)
        if peer not in self.members:
            return []
        del self.members[peer]
        return [Hangup(peer, "gone"), self._roster()]

    def receive(self, peer: bytes, kind: str, data: str) -> list[Action]:
        """A signal from ``peer`` (already admitted: it may read the doc)."""
        if peer == self.me:
            return [Dropped(peer, kind, "from ourselves")]
        if kind == "leave":
            if peer not in self.members:
                return []
            del self.members[peer]
            return [Hangup(peer, "left"), self._roster()]
        if not self.joined:
            # not in the call: a join needs no answer (we send ours when we join)
            return [] if kind in ("join", "present") else [Dropped(peer, kind, "not in the call")]
        if kind in ("join", "present"):
            out: list[Action] = []
            if peer in self.members:
                if kind == "present":
                    return []  # both joined at once: we counted it already
                # it joined again (a reloaded page): its old connection is dead
                del self.members[peer]
                out.append(Hangup(peer, "rejoined"))
            elif 1 + len(self.members) >= self.max_size:
                return [Send(peer, "full")]
            if kind == "join":
                out.append(Send(peer, "present"))
            return out + self._add(peer)
        if kind == "full":
            return [] if self.members else [Full(peer)]
        if kind in MEDIA_KINDS:
            if peer not in self.members:
                return [Dropped(peer, kind, "not a member of this call")]
            return [Deliver(peer, kind, data)]
        return [Dropped(peer, kind, "unknown kind")]


Listener = Callable[[Action], None]


class Calls:
    """The node's calls, on its network loop (``net.calls``). Public methods are
    safe from any thread; listeners run on the network thread (keep them short)."""

    def __init__(self, net: NodeNetwork) -> None:
        self.net = net
        self.calls: dict[bytes, CallState] = {}
        self.listeners: dict[bytes, Listener] = {}
        self._subscribed = False
        self._sweeping = False
        # doc -> peers a call member named in its `present`: we may not see their
        # grants yet (grants are shown only to the owner, inviter, known writers)
        self.introduced: dict[bytes, set[bytes]] = {}
        self._shown: set[tuple[bytes, bytes, int]] = set()  # (peer, doc, link id) shown our grant

    # -- network thread -------------------------------------------------------------
    def _subscribe(self) -> None:
        if not self._subscribed:
            self._subscribed = True
            self.net.on("peer_joined", lambda p: self._peer_online(p.id))
            self.net.on("peer_left", lambda p: self._peer_gone(p.id))

    def _sweep(self) -> None:
        """Every SWEEP s while in a call: tell peers that became reachable (a
        session opened, or its grants arrived after the hello) that we are in."""
        self._sweeping = False
        if not any(st.joined for st in self.calls.values()):
            return
        for doc, st in list(self.calls.items()):
            for p in self._reachable(doc):
                self._run(doc, st.peer_online(p))
        loop = self.net._loop
        if loop is not None and not self.net._closed:
            self._sweeping = True
            loop.call_later(SWEEP, self._sweep)

    def _introduce(self, doc: bytes, to: bytes) -> str:
        """``present`` data: the other members and their addresses, so a newcomer
        that reached only one of us (its inviter) can dial the rest of the mesh."""
        st = self.calls[doc]
        out = []
        for m in st.members:
            if m != to:
                _name, addrs = self.net.directory.names.get(m, ("", ()))
                out.append([m.hex(), list(addrs)[:4]])
        return json.dumps({"members": out[:MAX_MESH]}) if out else ""

    def _dial_members(self, doc: bytes, data: str) -> None:
        """Dial the members a ``present`` names (addresses pinned to their ids)."""
        from ownkernel.net.transport import parse_address
        try:
            rows = json.loads(data).get("members", []) if data else []
            for mid, addrs in rows[:MAX_MESH]:
                nid = bytes.fromhex(mid)
                if len(nid) != 32 or nid == self.net.id:
                    continue
                self.introduced.setdefault(doc, set()).add(nid)
                if self.net.online(nid):
                    continue
                good = [a for a in addrs[:4] if isinstance(a, str)
                        and parse_address(a)[1] == nid]
                if good:
                    self.net.dialing.planner.add(nid, good, sticky=False, urgent=True)
        except (ValueError, TypeError, AttributeError) as e:
            self.net.count("signal-bad-present", detail=str(e))

    def received(self, link: Link, doc: bytes, kind: str, data: str) -> None:
        """A ``signal`` from ``link.peer``: admitted only if it may read ``doc``."""
        peer = link.peer
        assert peer is not None
        self.net.counts["signals_in"] += 1
        if not self.net.sharing.may_read(peer, doc):
            # a non-member's signal: dropped and counted, never answered
            self.net.count("signal-refused", detail=f"from {peer.hex()[:12]}")
            with self.net.node.lock:
                self.net.node.gate.reject("signal-not-member")
            return
        st = self.calls.get(doc)
        if st is None:
            if kind not in ("join", "present", "leave"):
                self.net.count("signal-no-call")
            return
        if kind == "present" and st.joined:
            self._dial_members(doc, data)
        self._run(doc, st.receive(peer, kind, data))

    def _run(self, doc: bytes, actions: list[Action]) -> None:
        sent = False
        listener = self.listeners.get(doc)
        for a in actions:
            if isinstance(a, Send):
                link = self.net.by_peer.get(a.to)
                if link is None:
                    continue
                data = self._introduce(doc, a.to) if a.kind == "present" else a.data
                vouched = a.to in self.introduced.get(doc, ())
                if a.kind in ("join", "present"):
                    self._show_grant(link, doc)  # before the signal: it must admit it
                if link.session.send_signal(doc, a.kind, data, vouched=vouched):
                    self.net.counts["signals_out"] += 1
                    sent = True
            elif isinstance(a, Dropped):
                self.net.count("signal-dropped", detail=f"{a.kind}: {a.why}")
            elif listener is not None:
                try:
                    listener(a)
                except Exception:
                    self.net.counts["callback-errors"] += 1
                    log.exception("call listener failed on %r", a)
        if sent:
            self.net.outbox.flush_all()

    def _show_grant(self, link: Link, doc: bytes) -> None:
        """Show ``link.peer`` our grant for ``doc`` (once per connection): a call
        member that does not know us yet must be able to admit our signals."""
        assert link.peer is not None
        key = (link.peer, doc, id(link))
        if key in self._shown:
            return
        node = self.net.node
        with node.lock:
            d = node.gate._index().get(doc)
            grant = d.creds.grant if d is not None and d.mine is not None else None
        if grant is not None:
            self._shown.add(key)
            link.session.send_grants([grant])

    def _reachable(self, doc: bytes) -> list[bytes]:
        vouched = self.introduced.get(doc, set())
        return [p for p, link in self.net.by_peer.items()
                if link.session.is_open and (p in vouched or self.net.sharing.may_read(p, doc))]

    def _join(self, doc: bytes, listener: Listener) -> tuple[bytes, ...]:
        self._subscribe()
        st = self.calls.get(doc)
        if st is not None and st.joined:
            raise RuntimeError(f"already in the call of doc {doc.hex()[:12]}")
        st = self.calls[doc] = CallState(self.net.id)
        self.listeners[doc] = listener
        self._run(doc, st.join(self._reachable(doc)))
        if not self._sweeping:
            self._sweeping = True
            assert self.net._loop is not None
            self.net._loop.call_later(SWEEP, self._sweep)
        return tuple(st.members)

    def _leave(self, doc: bytes) -> None:
        st = self.calls.get(doc)
        if st is None:
            return
        self._run(doc, st.leave())
        self.calls.pop(doc, None)
        self.listeners.pop(doc, None)
        self.introduced.pop(doc, None)

    def _signal(self, doc: bytes, to: bytes, kind: str, data: str) -> None:
        st = self.calls.get(doc)
        if st is None or not st.joined:
            raise ValueError(f"not in the call of doc {doc.hex()[:12]}")
        if to not in st.members:
            raise ValueError(f"{to.hex()[:12]} is not in the call of doc {doc.hex()[:12]}")
        if kind not in MEDIA_KINDS:
            raise ValueError(f"only {sorted(MEDIA_KINDS)} go to one member, not {kind!r}")
        self._run(doc, [Send(to, kind, data)])

    def _peer_online(self, peer: bytes) -> None:
        for doc, st in list(self.calls.items()):
            if self.net.sharing.may_read(peer, doc):
                self._run(doc, st.peer_online(peer))

    def _peer_gone(self, peer: bytes) -> None:
        self._shown = {k for k in self._shown if k[0] != peer}
        for doc, st in list(self.calls.items()):
            self._run(doc, st.peer_gone(peer))

    # -- any thread -------------------------------------------------------------------
    def join(self, doc: Any, listener: Listener) -> tuple[bytes, ...]:
        """Join the call of ``doc``; ``listener`` gets every action (network thread)."""
        return self.net._call(self._join, _doc_id(doc), listener)

    def leave(self, doc: Any) -> None:
        self.net._call(self._leave, _doc_id(doc))

    def signal(self, doc: Any, to: bytes, kind: str, data: str) -> None:
        """Send an offer, answer or candidate to call member ``to``. ValueError if
        we or it are not in the call, or the data is too large (≤ 64 KiB)."""
        self.net._call(self._signal, _doc_id(doc), to, kind, data)

    def members(self, doc: Any) -> tuple[bytes, ...]:
        def get() -> tuple[bytes, ...]:
            st = self.calls.get(_doc_id(doc))
            return tuple(st.members) if st is not None else ()
        return self.net._call(get)


def _doc_id(doc: Any) -> bytes:
    d = getattr(doc, "id", doc)
    if not isinstance(d, bytes):
        raise TypeError(f"a call belongs to a doc (a DocHandle or id), not {type(doc).__name__}")
    return d


def calls_of(node: Any) -> Calls:
    """The calls part of a node with a network (RuntimeError without one)."""
    net = getattr(node, "_net", None)
    if net is None:
        raise RuntimeError("calls need the node's network (it was opened with network=False)")
    return net.calls


def ice_servers() -> list[dict[str, Any]]:
    """``OWNKERNEL_ICE_SERVERS`` (a JSON list of RTCIceServer dicts), default none.
    ValueError naming the variable when it is not such a list."""
    raw = os.environ.get("OWNKERNEL_ICE_SERVERS", "").strip()
    if not raw:
        return []
    try:
        val = json.loads(raw)
    except ValueError as e:
        raise ValueError(f"OWNKERNEL_ICE_SERVERS is not JSON: {e}") from None
    if not isinstance(val, list) or not all(isinstance(s, dict) and s.get("urls") for s in val):
        raise ValueError('OWNKERNEL_ICE_SERVERS must be a JSON list like '
                         '[{"urls": "stun:stun.example.org:3478"}]')
    return val
