"""OwnKernel: the IPython kernel with a node of your own in it.

Startup never waits for the node: `NodeHost.start()` opens it on a background
thread and the user namespace gets `node` (a proxy until the Node is ready,
then the Node itself). Shutdown and restart close the node through
`do_shutdown`; `atexit` and a SIGTERM handler cover kernels that are stopped
without a shutdown request.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import threading
from typing import Any

from ipykernel.ipkernel import IPythonKernel

from ownkernel import __version__
from ownkernel.kernel.nodehost import NodeHost, NodeProxy
from ownkernel.kernel.settings import Settings, SettingsError, load_settings

__all__ = ["OwnKernel"]

# The GIL switch interval of the kernel process (Python's default: 5 ms). The
# node's thread wakes for every key typed into a widget or arriving from a peer,
# and each time it has to win the GIL from the kernel's other threads, or from
# a cell computing: at 5 ms per hand-over a running cell added tens of ms to a
# key's way (benchmarks/results/ui.md). The forced switch only happens when
# another thread waits, so a cell alone pays nothing.
SWITCH_INTERVAL = 0.0005

log = logging.getLogger("ownkernel.kernel")


class OwnKernel(IPythonKernel):
    implementation = "ownkernel"
    implementation_version = __version__
    # Same language as the stock IPython kernel: notebooks move freely between them.
    language_info = {
        "name": "python",
        "version": sys.version.split()[0],
        "mimetype": "text/x-python",
        "codemirror_mode": {"name": "ipython", "version": sys.version_info[0]},
        "pygments_lexer": "ipython3",
        "nbconvert_exporter": "python",
        "file_extension": ".py",
    }

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        sys.setswitchinterval(SWITCH_INTERVAL)
        self.help_links = [
            *self.help_links,
            {"text": "ownkernel: %own help", "url": "https://pypi.org/project/ownkernel/"},
        ]
        self.host = _make_host()
        self._install_into_shell()
        # Start last: everything the starter thread may log to already exists.
        self.host.start()
        atexit.register(self.host.close)
        _install_sigterm(self.host)

    def _install_into_shell(self) -> None:
        from ownkernel.kernel.magics import OwnMagics

        shell = self.shell
        assert shell is not None  # IPythonKernel always has one
        shell.register_magics(OwnMagics(shell, host=self.host))
        from ownkernel.kernel.display import install_widget_formatters

        install_widget_formatters(shell, lambda: self.host.node)
        self._proxy = NodeProxy(self.host)
        shell.push({"node": self._proxy}, interactive=False)
        shell.events.register("pre_run_cell", self._swap_in_node)

    def _swap_in_node(self, *_: Any) -> None:
        # Runs on the main thread before each cell, so replacing the name can't
        # race with user code. Only replaces our own proxy: a user's `node = …`
        # wins.
        node = self.host.node
        if node is not None and self.shell is not None:
            ns = self.shell.user_ns
            if ns.get("node") is self._proxy:
                ns["node"] = node
        if self.host.state in ("ready", "failed", "closed"):
            try:
                self.shell.events.unregister("pre_run_cell", self._swap_in_node)
            except ValueError:
                pass

    @property
    def banner(self) -> str:  # type: ignore[override]
        base = super().banner or ""
        return (
            f"{base.rstrip()}\n"
            f"ownkernel {__version__}: your node is `node`; `%own help` lists the commands.\n"
        )

    @property
    def kernel_info(self) -> dict[str, Any]:
        info = dict(super().kernel_info)
        # ipykernel 7 implements protocol 5.5 (supported_features, kernel
        # subshells) while still announcing 5.3; say what this kernel speaks.
        if "kernel subshells" in info.get("supported_features", []):
            info["protocol_version"] = "5.5"
        return info

    def _publish_status(self, status: str, channel: str, parent: Any = None) -> None:
        # A key typed into one of our widgets is a comm message, and ipykernel
        # brackets every request with "busy" and "idle": JupyterLab then flips the
        # kernel's indicator (toolbar, status bar, favicon) twice per key on every
        # page showing this kernel, CPU that the keystroke's own way to the other
        # page competes with. For those messages only the "busy" is left out: the
        # kernel stays "idle" for the page (its status signal does not fire), and
        # the "idle" still comes, which completes the page's message future.
        if status == "busy" and parent is None and _for_live_widget(self.get_parent(channel)):
            return
        super()._publish_status(status, channel, parent)

    def do_shutdown(self, restart: bool) -> dict[str, Any]:
        # Called on the control thread for shutdown *and* restart requests:
        # the replacement kernel (same profile) can open the node only after
        # this one has released the store and the profile lock.
        self.host.close()
        return super().do_shutdown(restart)


def _for_live_widget(msg: Any) -> bool:
    """True for a comm message to one of ownkernel's live widgets (ownkernel.ui)."""
    try:
        if msg["header"]["msg_type"] != "comm_msg":
            return False
        comm_id = msg["content"]["comm_id"]
    except (KeyError, TypeError):
        return False
    base = sys.modules.get("ownkernel.ui.base")  # not imported: no widget of ours exists
    registry = sys.modules.get("ipywidgets.widgets.widget")
    if base is None or registry is None:
        return False
    widget = getattr(registry, "_instances", {}).get(comm_id)
    return isinstance(widget, base.LiveWidget)


def _make_host() -> NodeHost:
    try:
        settings = load_settings()
    except SettingsError as exc:
        # A broken config file must not stop the kernel: the node reports it.
        from ownkernel.kernel.settings import default_home

        host = NodeHost(Settings(home=default_home()))
        host.state, host.error = "failed", str(exc)
        host._ready.set()
        host.note(f"settings error: {exc}", logging.WARNING)
        return host
    return NodeHost(settings)


def _install_sigterm(host: NodeHost) -> None:
    """Close the node on SIGTERM (a kernel manager's fallback stop), then die as asked."""
    if threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: Any) -> None:
        # Bounded: a wedged node must not make the kernel unkillable.
        host.close(timeout=2.0)
        if callable(previous):
            previous(signum, frame)
            return
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    try:
        signal.signal(signal.SIGTERM, on_sigterm)
    except (ValueError, OSError):  # not allowed here (embedded): atexit still covers us
        pass
