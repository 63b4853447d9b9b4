"""Roots and the peer list render as live widgets when they are a cell's last
expression in the real ownkernel kernel, and keep a text form for terminals."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import kernel_sandbox
from test_kernel import Kernel

WIDGET = "application/vnd.jupyter.widget-view+json"


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    root: Path = tmp_path_factory.mktemp("ui-display")
    with kernel_sandbox(root):
        k = Kernel(OWNKERNEL_LISTEN="tcp://127.0.0.1:0")
        try:
            yield k
        finally:
            k.stop()


def test_text_and_log_roots_show_their_widgets(kernel: Kernel) -> None:
    kernel.run("d = node.new_doc('shown')\nd.text('body').insert(0, 'hello 😀')")
    [text] = kernel.run("d.text('body')").results
    assert WIDGET in text and text["text/plain"] == "Text('body', 'hello 😀')"
    [log] = kernel.run("d.log('chat')").results
    assert WIDGET in log
    # the widget in the output is an editor / a chat of that root
    mid = text[WIDGET]["model_id"]
    kinds = kernel.value("sorted({w.kind for w in __import__('ipywidgets').Widget.widgets"
                         ".values() if hasattr(w, '_post')})")
    assert {"editor", "chat"} <= set(kinds) and mid


def test_other_roots_keep_their_plain_reprs(kernel: Kernel) -> None:
    kernel.run("d2 = node.new_doc('plain')\nc = d2.counter('n')\nc += 2")
    [counter] = kernel.run("d2.counter('n')").results
    assert WIDGET not in counter and "2" in counter["text/plain"]


def test_peer_list_shows_the_live_widget(kernel: Kernel) -> None:
    [peers] = kernel.run("node.peers").results
    assert WIDGET in peers and peers["text/plain"] == "(no peers known yet)"


def test_explicit_constructors_from_ownkernel_ui(kernel: Kernel) -> None:
    out = kernel.run("from ownkernel import ui\nd3 = node.new_doc('x')\n"
                     "w = ui.editor(d3.text('notes.md'))\nprint(w.kind, w.language, w.root)")
    assert out.stdout.split() == ["editor", "markdown", "notes.md"]


def test_doc_handle_shows_the_doc_view(kernel: Kernel) -> None:
    [doc] = kernel.run("d4 = node.new_doc('viewed')\nd4.text('body')\nd4").results
    assert WIDGET in doc and "viewed" in doc["text/plain"]
    kinds = kernel.value("sorted({w.kind for w in __import__('ipywidgets').Widget.widgets"
                         ".values() if hasattr(w, '_post')})")
    assert "doc" in kinds
