"""The editor without its direct channel: the server extension's widget endpoint
switched off (``--OwnkernelRelay.widget_channel=False``), so the kernel's offer
leads to a refused WebSocket and both pages stay on the kernel's comm, typing both
ways as before (ownkernel/ui/channel.py, widgets/src/channel.js)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

lab = pytest.importorskip("lab", reason="tests/browser/lab.py")
_why = lab.missing()
pytestmark = pytest.mark.skipif(_why is not None, reason=_why or "")

from test_direct_browser import CELL_A, CELL_B, EDITOR, MODE, WAIT  # noqa: E402


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> Iterator[lab.Pages]:
    with lab.two_pages(tmp_path_factory.mktemp("lab"), CELL_A, CELL_B,
                       lambda _, page: page.wait_for_selector(EDITOR, timeout=WAIT),
                       shots="fallback",
                       lab_args=["--OwnkernelRelay.widget_channel=False"]) as p:
        yield p


screenshots = lab.screenshots


def test_without_the_endpoint_both_pages_type_over_the_comm(pages: lab.Pages) -> None:
    a, b = pages.a, pages.b
    lab.type_both_ways(pages, WAIT)
    # the kernels offered the channel (no server setting reaches them); the
    # WebSocket was refused and the views never left the comm
    assert a.evaluate(MODE) == b.evaluate(MODE) == "comm"
    assert a.evaluate(lab.EDITOR_TEXT) == b.evaluate(lab.EDITOR_TEXT) == "hi é😀 ok😀"
