"""The node's state is shared by the user's thread and the network thread."""

from __future__ import annotations

import threading

from ownkernel import Node


def test_network_thread_reading_docs_while_they_are_created() -> None:
    """Regression: the network thread (deciding which docs a peer may see)
    used to load a document without the node lock while the user's thread was
    creating it, leaving a second, stale in-memory copy whose next commit
    reused a stored seq (sqlite IntegrityError)."""
    with Node(profile=None, name="a") as a:
        net = a.network
        assert net is not None
        stop = threading.Event()
        failures: list[BaseException] = []

        def network_side() -> None:
            while not stop.is_set():
                for row in a.store.documents():
                    try:
                        net.sharing.may_read(b"\x01" * 32, row.id)
                    except BaseException as e:  # noqa: BLE001 - reported below
                        failures.append(e)
                        return

        t = threading.Thread(target=network_side)
        t.start()
        try:
            for i in range(150):
                doc = a.new_doc(f"d{i}")
                doc.text().insert(0, "x")
                doc.text().insert(1, "y")
                assert str(doc.text()) == "xy"
        finally:
            stop.set()
            t.join(timeout=10)
        assert not failures, failures
        assert len(a.docs()) == 150
