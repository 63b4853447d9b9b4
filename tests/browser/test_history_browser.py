"""ui.history in a real JupyterLab and Debian's Chromium (issue #12 §2): two
notebooks on two ownkernel kernels share one doc over 127.0.0.1; ann writes,
ben rewrites a word. Page A's history widget shows ben's step with ann's
deleted word marked, blames by author, walks back with the slider, and
"restore this version" brings ann's text back in both pages. Then comments
(§3): ann comments on a word she selects, ben replies, ann resolves. Then a
deck (§4): ann presents, ben's deck follows her slides, stops following when
ben navigates, and follows again on "follow the presenter". Screenshots go
to a temporary directory when a test fails (the path is printed); with
OWNKERNEL_UI_SHOTS=<dir> they are also taken when it passes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

lab = pytest.importorskip("lab", reason="tests/browser/lab.py")
_why = lab.missing()
pytestmark = pytest.mark.skipif(_why is not None, reason=_why or "")

HIST = '[data-own-widget="history"]'
WAIT = 60_000  # ms: generous, these are conditions, not timings

PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5E"
       "rkJggg==")  # a 1x1 PNG
CELL_A = [
    # two people (B runs as another user: conftest.OTHER_PERSON), each with a name
    # and a colour of their own (random colours could coincide)
    "from ownkernel import ui\nimport pathlib\nnode.name = 'ann'\nnode.color = '#1f77b4'\n"
    "doc = node.new_doc('hist')\ndoc.text('body').insert(0, 'hello world')\n"
    "pathlib.Path('invite.txt').write_text(node.invite(doc, write=True))",
    "ui.history(doc)",
    "ui.editor(doc.text('body'))",
    "ui.comments(doc.text('body'))",
    "from ownkernel.apps import Deck\nimport base64\ndeck = Deck(doc)\n"
    f"dot = deck.add_image(base64.b64decode('{PNG}'))\n"
    "for i in range(3):\n"
    "    deck.add(f'# Slide {i + 1}\\n\\n* point `x{i}`\\n\\n![a dot]({dot})',"
    " notes=f'say {i + 1}')\n"
    "deck.present()\nui.deck(deck)",
]
CELL_B = [
    "from ownkernel import ui\nimport pathlib\nnode.name = 'ben'\nnode.color = '#d62728'\n"
    "doc = node.join(pathlib.Path('invite.txt').read_text(), timeout=60)\n"
    "doc.text('body').replace(0, 5, 'HOWDY')",
    "ui.editor(doc.text('body'))",
    "ui.comments(doc.text('body'))",
    "from ownkernel.apps import Deck\nui.deck(Deck(doc))",
]
CMT = '[data-own-widget="comments"]'


Pages = lab.Pages


def view_text(page: Any, kinds: str = "same,ins") -> str:
    """Text root "body" as the history view shows it, only segments of these kinds."""
    return page.evaluate(
        "(kinds) => [...document.querySelectorAll('" + HIST + " [data-own=\"history-text\"]"
        "[data-own-root=\"body\"] "
        "[data-own-seg]')].filter(s => kinds.includes(s.getAttribute('data-own-seg')))"
        ".map(s => s.textContent).join('')", kinds.split(","))


def wait_js(page: Any, body: str) -> None:
    page.wait_for_function(f"() => {{ {body} }}", timeout=WAIT)


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pages]:
    ready = {"A": f'{HIST} [data-own="history-text"]', "B": lab.EDITOR_SEL}
    with lab.two_pages(tmp_path_factory.mktemp("histlab"), CELL_A, CELL_B,
                       lambda name, page: page.wait_for_selector(ready[name], timeout=WAIT),
                       shots="history") as p:
        yield p


screenshots = lab.screenshots


def test_the_latest_step_marks_what_ben_deleted_and_inserted(pages: Pages) -> None:
    a = pages.a
    # ben's step arrives live: the view shows his insert and ann's deleted word
    wait_js(a, f"const s = document.querySelector('{HIST} [data-own-seg=\"ins\"]');"
               " return !!s && s.textContent === 'HOWDY';")
    dele = a.locator(f'{HIST} [data-own-seg="del"]')
    assert dele.first.text_content() == "hello"
    assert dele.first.get_attribute("data-own-author") == "ann"
    ins = a.locator(f'{HIST} [data-own-seg="ins"]').first
    assert ins.get_attribute("data-own-author") == "ben"
    assert view_text(a) == "HOWDY world"
    assert "ben" in a.inner_text(f'{HIST} [data-own="history-info"]')
    # the latest step cannot be restored: it is what the doc is
    assert a.is_disabled(f'{HIST} [data-own="history-restore"]')


def test_blame_colours_each_authors_text(pages: Pages) -> None:
    a = pages.a
    a.click(f'{HIST} [data-own="history-blame"]')
    wait_js(a, f"const b = document.querySelector('{HIST} [data-own=\"history-blame\"]');"
               " return b.getAttribute('aria-pressed') === 'true';")
    colours = a.evaluate(
        "() => Object.fromEntries([...document.querySelectorAll('" + HIST +
        " [data-own-seg=\"same\"], " + HIST + " [data-own-seg=\"ins\"]')]"
        ".map(s => [s.getAttribute('data-own-author'), s.style.borderBottomColor]))")
    assert set(colours) == {"ann", "ben"}
    assert colours["ann"] and colours["ben"] and colours["ann"] != colours["ben"]


def test_slider_walks_back_and_restore_brings_the_text_back(pages: Pages) -> None:
    a, b = pages.a, pages.b
    steps = int(a.get_attribute(HIST, "data-own-steps") or 0)
    assert steps >= 2
    a.focus(f'{HIST} [data-own="history-slider"]')
    a.keyboard.press("Home")  # the first step: ann's creation and text
    wait_js(a, f"return document.querySelector('{HIST}').getAttribute('data-own-step') === '0';")
    assert view_text(a) == "hello world"
    assert view_text(a, "del") == ""
    assert not a.is_disabled(f'{HIST} [data-own="history-restore"]')
    a.click(f'{HIST} [data-own="history-restore"]')
    # a new step (the restore), shown as the latest; both editors have the text back
    wait_js(a, f"return document.querySelector('{HIST}').getAttribute('data-own-steps')"
               f" === '{steps + 1}';")
    wait_js(a, f"return document.querySelector('{HIST}').getAttribute('data-own-step')"
               f" === '{steps}';")
    assert view_text(a) == "hello world" and view_text(a, "del") == "HOWDY"
    b.wait_for_function(f"() => ({lab.EDITOR_TEXT})() === {json.dumps('hello world')}",
                        timeout=WAIT)


def test_a_comment_on_selected_text_gets_a_reply_and_is_resolved(pages: Pages) -> None:
    a, b = pages.a, pages.b
    b.wait_for_selector(f'{CMT} [data-own="comments-text"]', timeout=WAIT)
    wait_js(a, f"const p = document.querySelector('{CMT} [data-own=\"comments-text\"]');"
               " return !!p && p.textContent === 'hello world';")
    a.evaluate("""(sel) => {
      const pre = document.querySelector(sel);
      const node = pre.firstChild.firstChild;  // one span, one text node: no anchors yet
      const r = document.createRange();
      r.setStart(node, 6); r.setEnd(node, 11);  // "world"
      const s = window.getSelection(); s.removeAllRanges(); s.addRange(r);
    }""", f'{CMT} [data-own="comments-text"]')
    # selectionchange is dispatched asynchronously: wait until the widget took it
    wait_js(a, f"return document.querySelector('{CMT}').getAttribute('data-own-selection')"
               " === '6-11';")
    a.fill(f'{CMT} [data-own="comment-input"]', "which world?")
    a.click(f'{CMT} [data-own="comment-add"]')
    # ben's page: the thread in the margin and its anchor on "world"
    b.wait_for_selector(f'{CMT} [data-own="thread"]', timeout=WAIT)
    assert b.inner_text(f'{CMT} [data-own="thread"] .quote') == "“world”"
    assert "ann" in b.inner_text(f'{CMT} [data-own="thread"]')
    assert b.inner_text(f'{CMT} [data-own-anchor]') == "world"
    # ... and ben's live editor shows the anchor and the thread in its margin
    ed = '[data-own-widget="editor"]'
    b.wait_for_selector(f'{ed} .cm-own-comment', timeout=WAIT)
    assert b.inner_text(f'{ed} .cm-own-comment') == "world"
    assert "which world?" in b.inner_text(f'{ed} [data-own="editor-thread"]')
    b.fill(f'{CMT} [data-own="reply-input"]', "this one")
    b.click(f'{CMT} [data-own="reply-send"]')
    a.wait_for_selector(f'{CMT} [data-own="reply"]', timeout=WAIT)
    assert "ben" in a.inner_text(f'{CMT} [data-own="reply"]')
    assert "this one" in a.inner_text(f'{CMT} [data-own="reply"]')
    a.click(f'{CMT} [data-own="thread-resolve"]')
    wait_js(b, f"const t = document.querySelector('{CMT} [data-own=\"thread\"]');"
               " return !!t && t.getAttribute('data-own-resolved') === 'true';")
    assert b.locator(f'{CMT} [data-own-anchor]').count() == 0  # resolved: no highlight
    wait_js(b, "const t = document.querySelector('[data-own-widget=\"editor\"] "
               "[data-own=\"editor-thread\"]');"
               " return !!t && t.getAttribute('data-own-resolved') === 'true';")
    assert b.locator('[data-own-widget="editor"] .cm-own-comment').count() == 0
    assert "this one" in b.inner_text('[data-own-widget="editor"] [data-own="editor-thread"]')
    lab.keep_shot(b, "editor-comments-B.png", full_page=True)


DECK = '[data-own-widget="deck"]'


def wait_slide(page: Any, i: int, following: bool | None = None) -> None:
    cond = f"e.getAttribute('data-own-slide') === '{i}'"
    if following is not None:
        cond += f" && e.getAttribute('data-own-following') === '{str(following).lower()}'"
    wait_js(page, f"const e = document.querySelector('{DECK}'); return !!e && {cond};")


def test_the_followers_deck_follows_the_presenter_stops_and_resumes(pages: Pages) -> None:
    a, b = pages.a, pages.b
    # ben joined late: he lands on ann's slide once her presence reaches him (slide 0
    # is also where a deck with no presenter starts: wait for the presenter's name)
    wait_js(b, f"const p = document.querySelector('{DECK} [data-own=\"deck-presenter\"]');"
               " return !!p && p.innerText.includes('ann is presenting');")
    wait_slide(b, 0, following=True)
    assert b.inner_text(f'{DECK} [data-own="deck-slide"] h1') == "Slide 1"
    assert b.inner_text(f'{DECK} [data-own="deck-slide"] code') == "x0"
    # the image stored in the doc by its hash, shown from a data: URL
    src = b.get_attribute(f'{DECK} [data-own="deck-slide"] img', "src") or ""
    assert src.startswith("data:image/png;base64,")
    wait_js(b, f"const i = document.querySelector('{DECK} [data-own=\"deck-slide\"] img');"
               " return i.complete && i.naturalWidth === 1;")  # it decoded: a real image
    assert not b.is_visible(f'{DECK} [data-own="deck-speaker"]')
    assert "say 1" in a.inner_text(f'{DECK} [data-own="deck-speaker"]')  # speaker view
    a.click(f'{DECK} [data-own="deck-next"]')
    wait_slide(b, 1, following=True)
    assert b.inner_text(f'{DECK} [data-own="deck-slide"] h1') == "Slide 2"
    b.click(f'{DECK} [data-own="deck-next"]')  # ben looks ahead: stops following
    wait_slide(b, 2, following=False)
    assert b.is_visible(f'{DECK} [data-own="deck-follow"]')
    a.click(f'{DECK} [data-own="deck-prev"]')
    wait_slide(a, 0)
    wait_js(b, f"return document.querySelector('{DECK} [data-own=\"deck-presenter\"]')"
               ".textContent.includes('slide 1');")
    assert b.get_attribute(DECK, "data-own-slide") == "2"  # he stays where he looked
    b.click(f'{DECK} [data-own="deck-follow"]')
    wait_slide(b, 0, following=True)
    assert not b.is_visible(f'{DECK} [data-own="deck-follow"]')

