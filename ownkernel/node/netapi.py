"""What a ``Node`` gains from its network: address, peers, connect, join, events.

``Node`` inherits :class:`NetworkMixin`; the machinery lives in
:mod:`ownkernel.node.network` (its own thread and event loop).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

from ownkernel.node.addressbook import NetConfig, Peer, env_bootstrap
from ownkernel.node.network import NodeNetwork
from ownkernel.node.reprs import PeerList

_UNSET: Any = object()


class NetworkMixin:
    """What ``Node`` gains from its network (``Node`` inherits this).

    Methods raise ``RuntimeError`` on a node made with ``network=False``;
    ``peers`` is then empty and ``address`` None.
    """

    _net: NodeNetwork | None

    def _start_network(
        self: Any,
        listen: Any,
        bootstrap: Any,
        relay: bool,
        discovery: dict[str, Any] | None,
        network: Any,
    ) -> None:
        self._net = None
        if network is False:
            return
        base = network if isinstance(network, NetConfig) else NetConfig()
        cfg = dataclasses.replace(base)
        if listen is not _UNSET:
            cfg.listen = (
                [] if listen is None else [listen] if isinstance(listen, str) else list(listen)
            )
        if bootstrap is not None:
            cfg.bootstrap = [bootstrap] if isinstance(bootstrap, str) else list(bootstrap)
        cfg.bootstrap = list(dict.fromkeys([*cfg.bootstrap, *env_bootstrap()]))
        cfg.relay = cfg.relay or relay
        if discovery is not None:
            cfg.discovery = discovery
        self._net = NodeNetwork(self, cfg).start()

    def _stop_network(self) -> None:
        net, self._net = getattr(self, "_net", None), None
        if net is not None:
            net.close()

    def _network(self) -> NodeNetwork:
        if self._net is None:
            raise RuntimeError(
                "this node has no network (it was made with network=False or is closed)"
            )
        return self._net

    @property
    def network(self) -> NodeNetwork | None:
        return self._net

    @property
    def address(self) -> str | None:
        """Where peers reach this node: ``tcp://host:port#<node id hex>`` (None: not listening)."""
        return self._net.addresses[0] if self._net and self._net.addresses else None

    @property
    def addresses(self) -> list[str]:
        return list(self._net.addresses) if self._net else []

    @property
    def peers(self) -> list[Peer]:
        """Known peers (id, name, addresses, online, latency, last_seen), online first."""
        return PeerList(self._net.peers() if self._net else [])

    def connect(self: Any, target: str, timeout: float | None = 5.0) -> Peer | None:
        """Connect to an address (``node.address`` of a peer) or an invite token.

        A token is joined first (its doc gets fetched). Waits up to ``timeout``
        seconds for the session (``None``/0: do not wait); keeps trying in the
        background after a ``TimeoutError``.
        """
        from ownkernel.node.grants import TOKEN_PREFIX

        if target.strip().startswith(TOKEN_PREFIX):
            self._join_local(target)
        return self._network().connect(target, timeout)

    def join(self: Any, token: str, timeout: float | None = None) -> Any:
        """Join the doc an invite token grants, connect to its inviter, fetch the doc.

        Returns the DocHandle at once (content arrives in the background); with
        ``timeout``, waits until the content has arrived (TimeoutError if not).
        """
        handle = self._join_local(token)
        if self._net is not None:
            self._net.connect(token, timeout=None)
        if timeout:
            end = time.monotonic() + timeout
            while not self._net or not self._has_content(handle.id):
                if time.monotonic() > end:
                    raise TimeoutError(
                        f"document {handle.short_id} not received within "
                        f"{timeout:.1f} s; still trying in the background"
                    )
                time.sleep(0.01)
        return handle

    def _has_content(self: Any, doc_id: bytes) -> bool:
        with self._lock:
            return any(a != self.id for a in self._open_doc(doc_id).heads)

    def on(self, event: str, callback: Callable[..., Any]) -> Callable[[], None]:
        """Call ``callback`` on ``event`` (see ``NodeNetwork.on``); returns an unsubscriber."""
        return self._network().on(event, callback)

    def set_presence(self, doc: Any, state: Any) -> None:
        """Announce our presence in ``doc`` (a DocHandle or id) to its peers; None: left."""
        self._network().set_presence(getattr(doc, "id", doc), state)

    def presence(self, doc: Any) -> dict[bytes, Any]:
        """``{peer id: state}`` of the peers present in ``doc`` right now."""
        return self._network().get_presence(getattr(doc, "id", doc)) if self._net else {}

    def sync(self) -> None:
        """Run anti-entropy with every peer now (it also runs periodically)."""
        self._network().sync_now()

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the node thread (its network loop) soon; returns at once.

        The one way for other threads (a kernel's comm handlers, widgets) to hand
        work to the node thread. Without a network (``network=False``) ``fn`` runs
        right away in the calling thread.
        """
        if self._net is None:
            fn(*args)
        else:
            self._net.call_soon(fn, *args)
