"""A key typed into one of our widgets does not flip the kernel to "busy" in
JupyterLab (kernel.py ``_publish_status``): a real ownkernel process through
jupyter_client, a comm message to a live widget gets only its "idle"; any other
comm message (here to a plain anywidget) and any other request still get both.
And the kernel hands the GIL over quickly (its node thread waits for it per key).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import kernel_sandbox
from test_kernel import TIMEOUT, Kernel


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    with kernel_sandbox(tmp_path_factory.mktemp("kernels")):
        k = Kernel()
        try:
            yield k
        finally:
            k.stop()


def statuses(k: Kernel, comm_id: str, content: dict[str, Any]) -> list[str]:
    """Send one widget message; the statuses published for it, until its idle."""
    msg = k.kc.session.msg("comm_msg", {"comm_id": comm_id,
                                        "data": {"method": "custom", "content": content}})
    k.kc.shell_channel.send(msg)
    out: list[str] = []
    end = time.monotonic() + TIMEOUT
    while "idle" not in out:
        assert time.monotonic() < end, f"no idle for the comm message (got {out})"
        m = k.kc.get_iopub_msg(timeout=TIMEOUT)
        if m["parent_header"].get("msg_id") == msg["header"]["msg_id"] \
                and m["msg_type"] == "status":
            out.append(m["content"]["execution_state"])
    return out


def test_widget_comm_messages_leave_the_kernel_idle(kernel: Kernel) -> None:
    kernel.run("import anywidget\nfrom ownkernel import ui\n"
               "_ed = ui.editor(node.new_doc('t').text('body'))\n"
               "class _W(anywidget.AnyWidget):\n    _esm = 'export default {}'\n"
               "_aw = _W()")
    ids = kernel.value("[_ed.comm.comm_id, _aw.comm.comm_id]")
    ours, plain = ids
    while True:  # drop what the cell published
        try:
            kernel.kc.get_iopub_msg(timeout=0.5)
        except Exception:
            break
    assert statuses(kernel, ours, {"t": "ready"}) == ["idle"]
    # a bad message to our widget: still handled (the widget answers with an error)
    assert statuses(kernel, ours, {"t": 5}) == ["idle"]
    assert statuses(kernel, plain, {"t": "ready"}) == ["busy", "idle"]
    # and a cell is busy while it runs, as always
    assert kernel.value("1 + 1") == 2
    run = kernel.kc.execute("pass")
    seen: list[str] = []
    while "idle" not in seen:
        m = kernel.kc.get_iopub_msg(timeout=TIMEOUT)
        if m["parent_header"].get("msg_id") == run and m["msg_type"] == "status":
            seen.append(m["content"]["execution_state"])
    assert seen == ["busy", "idle"]


def test_the_node_thread_gets_the_gil_quickly(kernel: Kernel) -> None:
    from ownkernel.kernel.kernel import SWITCH_INTERVAL

    assert SWITCH_INTERVAL < 0.005  # below Python's default
    assert kernel.value("__import__('sys').getswitchinterval()") == SWITCH_INTERVAL
