"""The widgets in a real JupyterLab, in Debian's Chromium (Playwright), with two
notebooks on two ownkernel kernels whose nodes sync over 127.0.0.1.

Page A makes a doc and writes an invite to a file; page B joins it. Both show
an editor, a chat and the peer list of the same doc. Screenshots of both pages
go to a temporary directory when a test fails (the path is printed); with
OWNKERNEL_UI_SHOTS=<dir> they are also taken when it passes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

lab = pytest.importorskip("lab", reason="tests/browser/lab.py")
_why = lab.missing()
pytestmark = pytest.mark.skipif(_why is not None, reason=_why or "")

EDITOR = '[data-own-widget="editor"] .cm-content'
WAIT = 60_000  # ms: generous, these are conditions, not timings

CELL_A = [
    "from ownkernel import ui\nimport pathlib\nnode.name = 'ann'\nnode.color = '#1f77b4'\n"
    "doc = node.new_doc('live')\ndoc.text('body')\ndoc.log('chat')\n"
    "pathlib.Path('invite.txt').write_text(node.invite(doc))",
    "ui.editor(doc.text('body'))",
    "ui.chat(doc.log('chat'))",
    "ui.peers(node)",
    "doc",
]
CELL_B = [
    "from ownkernel import ui\nimport pathlib\nnode.name = 'ben'\nnode.color = '#d62728'\n"
    "doc = node.join(pathlib.Path('invite.txt').read_text(), timeout=60)",
    "ui.editor(doc.text('body'))",
    "ui.chat(doc.log('chat'))",
    "ui.peers(node)",
]


class Pages(lab.Pages):
    def text(self, page: Any) -> str | None:
        return page.evaluate(lab.EDITOR_TEXT)

    def wait_text(self, page: Any, want: str) -> None:
        page.wait_for_function(f"() => ({lab.EDITOR_TEXT})() === {_js(want)}", timeout=WAIT)


def _js(s: str) -> str:
    import json
    return json.dumps(s)


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pages]:
    with lab.two_pages(tmp_path_factory.mktemp("lab"), CELL_A, CELL_B,
                       lambda _, page: page.wait_for_selector(EDITOR, timeout=WAIT),
                       shots="ui") as p:
        yield Pages(p.pages, p.shots, p.server)


screenshots = lab.screenshots


def test_typing_in_one_editor_shows_in_the_other_and_back(pages: Pages) -> None:
    a, b = pages.a, pages.b
    a.click(EDITOR)
    a.keyboard.type("hi é😀")
    pages.wait_text(b, "hi é😀")
    b.click(EDITOR)
    b.keyboard.press("End")
    b.keyboard.type(" ok😀")
    pages.wait_text(a, "hi é😀 ok😀")
    assert pages.text(b) == "hi é😀 ok😀"
    lab.keep_shot(a, "editor-A.png")


def test_remote_insert_before_the_caret_keeps_the_local_caret(pages: Pages) -> None:
    a, b = pages.a, pages.b
    start = pages.text(a) or ""
    b.click(EDITOR)
    b.keyboard.press("Control+End")  # B's caret at the very end
    a.click(EDITOR)
    a.keyboard.press("Control+Home")
    a.keyboard.type(">> ")  # A inserts before B's caret
    pages.wait_text(b, ">> " + start)
    b.keyboard.type("!")  # B's caret stayed at the end: "!" lands there
    pages.wait_text(a, ">> " + start + "!")
    assert pages.text(b) == ">> " + start + "!"


def test_both_pages_typing_at_once_converge_with_every_key(pages: Pages) -> None:
    a, b = pages.a, pages.b
    before = pages.text(a) or ""
    a.click(EDITOR)
    a.keyboard.press("Control+End")
    b.click(EDITOR)
    b.keyboard.press("Control+Home")
    for _ in range(40):  # interleaved, without waiting: pushes cross in flight
        a.keyboard.type("1")
        b.keyboard.type("2")
    a.wait_for_function(
        f"() => {{ const t = ({lab.EDITOR_TEXT})(); return t && [...t].length === "
        f"{len(before) + 80}; }}", timeout=WAIT)
    pages.wait_text(b, pages.text(a) or "")
    final = pages.text(a) or ""
    assert final.count("1") - before.count("1") == 40
    assert final.count("2") - before.count("2") == 40


def test_blame_colours_each_authors_text_in_the_editor(pages: Pages) -> None:
    """Issue #12 §2: the editor's blame button colours the text by who wrote it."""
    a = pages.a
    btn = '[data-own-widget="editor"] [data-own="editor-blame"]'
    a.click(btn)
    a.wait_for_function(
        "() => ['ann', 'ben'].every(n => document.querySelector("
        "`[data-own-widget=\"editor\"] .cm-own-blame[data-own-blame=\"${n}\"]`))",
        timeout=WAIT)
    assert a.get_attribute(btn, "aria-pressed") == "true"
    colours = a.evaluate(
        "() => Object.fromEntries([...document.querySelectorAll("
        "'[data-own-widget=\"editor\"] .cm-own-blame')]"
        ".map(s => [s.getAttribute('data-own-blame'), s.style.borderBottomColor]))")
    assert colours["ann"] and colours["ben"] and colours["ann"] != colours["ben"]
    lab.keep_shot(a, "editor-blame-A.png")
    a.click(btn)  # off again
    a.wait_for_function(
        "() => !document.querySelector('[data-own-widget=\"editor\"] .cm-own-blame')",
        timeout=WAIT)
    assert a.get_attribute(btn, "aria-pressed") == "false"


def test_undo_takes_back_only_my_own_typing(pages: Pages) -> None:
    a, b = pages.a, pages.b
    before = pages.text(a) or ""
    a.click(EDITOR)
    a.keyboard.press("Control+End")
    a.keyboard.type(" mine")
    pages.wait_text(b, before + " mine")
    b.click(EDITOR)
    b.keyboard.press("Control+Home")
    b.keyboard.type("theirs ")
    pages.wait_text(a, "theirs " + before + " mine")
    a.click(EDITOR)
    a.keyboard.press("Control+z")  # A's last edit goes, B's stays
    pages.wait_text(a, "theirs " + before)
    pages.wait_text(b, "theirs " + before)


def test_chat_message_sent_in_one_page_appears_in_the_other(pages: Pages) -> None:
    a, b = pages.a, pages.b
    a.click('[data-own="chat-input"]')
    a.keyboard.type("hello from A 😀")
    a.keyboard.press("Enter")
    msg = b.locator('[data-own="chat-message"]', has_text="hello from A 😀")
    msg.wait_for(timeout=WAIT)
    assert "ann" in msg.inner_text()
    assert a.input_value('[data-own="chat-input"]') == ""  # Enter sent and cleared it


def run_code(page: Any, code: str) -> None:
    """Run code in the page's kernel (no cell, no output)."""
    page.evaluate("""async (code) => {
      const k = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
      await k.requestExecute({ code }).done; }""", code)


def kernel_value(page: Any, expr: str) -> Any:
    """The value of a Python expression in the page's kernel (via its repr)."""
    import ast
    rep = page.evaluate("""async (expr) => {
      const k = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
      const f = k.requestExecute({ code: "", user_expressions: { v: expr } });
      let out = null;
      f.onReply = (msg) => { out = msg.content.user_expressions.v; };
      await f.done;
      return out && out.status === "ok" ? out.data["text/plain"] : null; }""", expr)
    assert rep is not None, f"{expr!r} failed in the kernel"
    return ast.literal_eval(rep)


def test_burst_of_remote_edits_into_an_open_editor_ends_equal(pages: Pages) -> None:
    """Node B makes 1,000 random edits (10 commits); page A's editor ends with
    B's text and still takes keys (the 10,000-edit run and its long tasks are
    in benchmarks/ui.py --burst)."""
    a, b = pages.a, pages.b
    run_code(b, "import random as _r\n_t = doc.text('body'); _g = _r.Random(3)\n"
                "for _k in range(10):\n    with doc.transaction():\n"
                "        for _ in range(100):\n            _n = len(str(_t))\n"
                "            if _n and _g.random() < 0.2: _t.delete(_g.randrange(_n), 1)\n"
                "            else: _t.insert(_g.randint(0, _n), 'xyz😀'[_g.randrange(4)])\n")
    # the text as B's node holds it (B's own editor may still be showing the burst)
    want = kernel_value(b, "str(_t)")
    pages.wait_text(b, want)
    pages.wait_text(a, want)
    a.click(EDITOR)
    a.keyboard.press("Control+End")
    a.keyboard.type("!")
    pages.wait_text(b, want + "!")


def test_doc_view_shows_roots_people_and_access_and_opens_a_root(pages: Pages) -> None:
    a, b = pages.a, pages.b
    view = a.locator('[data-own-widget="doc"]')
    view.locator('[data-own="doc-title"]', has_text="live").wait_for(timeout=WAIT)
    view.locator('[data-own="doc-present"]', has_text="ben").wait_for(timeout=WAIT)
    view.locator('[data-own="doc-access"][data-own-role="owner"]', has_text="ann").wait_for(
        timeout=WAIT)
    assert view.locator('[data-own="doc-root"]').all_inner_texts() == [
        "body (text)", "chat (log)"]
    view.locator('[data-own="doc-root"][data-own-root="body"]').click()
    # the root's editor opens below the header, in the same output
    opened = a.locator('.jp-OutputArea-output:has([data-own-widget="doc"]) '
                       '[data-own-widget="editor"] .cm-content')
    opened.wait_for(timeout=WAIT)
    opened.click()
    opened.press("Control+End")
    opened.type(" via doc")
    _wait_suffix(b, " via doc")  # B's editor shows what was typed in A's doc view
    lab.keep_shot(a, "doc-view-A.png", full_page=True)


def _wait_suffix(page: Any, suffix: str) -> str:
    page.wait_for_function(f"() => ({lab.EDITOR_TEXT})().endsWith({_js(suffix)})",
                           timeout=WAIT)
    return page.evaluate(lab.EDITOR_TEXT)


def test_a_new_name_shows_in_the_other_pages_widgets(pages: Pages) -> None:
    a, b = pages.a, pages.b
    run_code(a, "node.name = 'Ann Lee'\nnode.color = '#8e44ad'")
    b.locator('[data-own="peer"]', has_text="Ann Lee").wait_for(timeout=WAIT)
    # the chat shows A's earlier message under the new name
    b.locator('[data-own="chat-message"]', has_text="Ann Lee").wait_for(timeout=WAIT)
    lab.keep_shot(b, "renamed-B.png", full_page=True)


def test_peer_that_shuts_down_turns_offline_in_the_other_page(pages: Pages) -> None:
    a, b = pages.a, pages.b
    a.locator('[data-own="peer"][data-own-state="online"]', has_text="ben").wait_for(
        timeout=WAIT)
    lab.keep_shot(a, "page-A.png", full_page=True)
    lab.keep_shot(b, "page-B.png", full_page=True)
    b.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.shutdown()")
    a.locator('[data-own="peer"][data-own-state="offline"]', has_text="ben").wait_for(
        timeout=WAIT)
