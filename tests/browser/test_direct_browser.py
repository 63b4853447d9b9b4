"""The editor's direct channel in a real JupyterLab (Debian's Chromium, Playwright):
page ⇄ jupyter-server extension (``<base_url>ownkernel/widget/<kernel id>``) ⇄ the
kernel's node, with the comm as the fallback (ownkernel/ui/channel.py).

Two notebooks on two ownkernel kernels; typing both ways over the direct channel,
one page losing its WebSocket mid-typing (both end equal), and what a stranger
gets from the endpoint (an unauthenticated WebSocket, a wrong token: nothing).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from wsclient import exchange

lab = pytest.importorskip("lab", reason="tests/browser/lab.py")
_why = lab.missing()
pytestmark = pytest.mark.skipif(_why is not None, reason=_why or "")

EDITOR = '[data-own-widget="editor"] .cm-content'
WAIT = 60_000  # ms: conditions, not timings
MODE = """() => { const e = document.querySelector('[data-own-widget="editor"]');
  return e && e.ownChannel ? e.ownChannel.mode : null; }"""
KERNEL_ID = """() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.id"""

CELL_A = [
    "from ownkernel import ui\nimport pathlib\nnode.name = 'ann'\n"
    "doc = node.new_doc('direct')\ndoc.text('body')\n"
    "pathlib.Path('invite.txt').write_text(node.invite(doc))",
    "ui.editor(doc.text('body'))",
]
CELL_B = [
    "from ownkernel import ui\nimport pathlib\nnode.name = 'ben'\n"
    "doc = node.join(pathlib.Path('invite.txt').read_text(), timeout=60)",
    "ui.editor(doc.text('body'))",
]


def _ready(_name: str, page: Any) -> None:
    page.wait_for_selector(EDITOR, timeout=WAIT)
    page.wait_for_function(f"() => ({MODE})() === 'direct'", timeout=WAIT)


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> Iterator[lab.Pages]:
    with lab.two_pages(tmp_path_factory.mktemp("lab"), CELL_A, CELL_B, _ready,
                       shots="direct") as p:
        yield p


screenshots = lab.screenshots


def text(page: Any) -> str | None:
    return page.evaluate(lab.EDITOR_TEXT)


def wait_text(page: Any, want: str) -> None:
    lab.wait_editor_text(page, want, WAIT)


def test_both_pages_type_over_the_direct_channel(pages: lab.Pages) -> None:
    a, b = pages.a, pages.b
    assert a.evaluate(MODE) == b.evaluate(MODE) == "direct"
    lab.type_both_ways(pages, WAIT)
    # still direct on both: nothing fell back to the comm on the way
    assert a.evaluate(MODE) == b.evaluate(MODE) == "direct"
    lab.keep_shot(a, "direct-A.png")


def test_losing_the_websocket_mid_typing_ends_equal_and_reattaches(pages: lab.Pages) -> None:
    a, b = pages.a, pages.b
    start = text(a) or ""
    a.click(EDITOR)
    a.keyboard.press("Control+End")
    # typing with no pause, the WebSocket dropped between two keys: what was in
    # flight goes again over the comm, and the kernel keeps one copy
    a.keyboard.type(" 1é")
    a.evaluate("""() => document.querySelector('[data-own-widget="editor"]')
                     .ownChannel.drop()""")
    a.keyboard.type("2😀3")
    want = start + " 1é2😀3"
    wait_text(b, want)
    wait_text(a, want)
    # page A asks for a new offer a second later and attaches again
    a.wait_for_function(f"() => ({MODE})() === 'direct'", timeout=WAIT)
    # and the other way: B types, A shows it
    b.click(EDITOR)
    b.keyboard.press("Control+End")
    b.keyboard.type(" back")
    wait_text(a, want + " back")
    a.keyboard.press("Control+End")
    a.keyboard.type("!")
    wait_text(b, want + " back!")
    assert text(a) == text(b) == want + " back!"


def ws_run(url: str, sends: list[str], wait: float) -> tuple[list[str | bytes], bool, int | None]:
    """Open ``url``, send ``sends``; (messages received, closed by the server, HTTP
    status if the upgrade was refused)."""
    got = exchange(url, list(sends), wait)
    return got.frames, got.closed, got.status


def test_strangers_get_nothing_from_the_endpoint(pages: lab.Pages) -> None:
    server = pages.server
    kernel = pages.a.evaluate(KERNEL_ID)
    base = f"ws://127.0.0.1:{server.port}/ownkernel/widget/{kernel}"
    # no Jupyter token: refused before anything reaches the kernel
    got, closed, status = ws_run(base, [], wait=5.0)
    assert status == 403 and got == []
    # a wrong Jupyter token: the same
    got, closed, status = ws_run(f"{base}?token=nope", [], wait=5.0)
    assert status == 403 and got == []
    authed = f"{base}?token={server.token}"
    # a Jupyter user without the view's token: closed without a message
    for first in [json.dumps({"t": "hello", "token": "not-the-token", "v": 0}),
                  json.dumps({"t": "ready"}), "garbage"]:
        got, closed, status = ws_run(authed, [first], wait=10.0)
        assert status is None and closed, first
        assert not [m for m in got if '"snapshot"' in m or '"deltas"' in m], (first, got)
    # an unknown kernel: 404
    got, closed, status = ws_run(
        f"ws://127.0.0.1:{server.port}/ownkernel/widget/nope?token={server.token}",
        [], wait=5.0)
    assert status == 404
    # the pages are unaffected
    pages.a.click(EDITOR)
    pages.a.keyboard.press("Control+End")
    pages.a.keyboard.type("#")
    want = (text(pages.a) or "")
    wait_text(pages.b, want)
