"""Workshop rooms: a teacher's room (chat, notes, sheet, slides) reached by a student
through its token, in Python and through `%own workshop` / `%own join` on real kernels."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import test_kernel as tk
from conftest import kernel_sandbox
from test_classmates import wait_for

from ownkernel import Node
from ownkernel.apps.workshop import Room, _qr_matrix, join_room, qr_png, workshop


@pytest.fixture
def pair() -> Iterator[tuple[Node, Node]]:
    with Node(None, "teacher", listen="tcp://127.0.0.1:0") as t, \
            Node(None, "student", listen=None) as s:
        yield t, s


def test_student_reaches_chat_notes_and_sheet_through_the_token(
        pair: tuple[Node, Node]) -> None:
    teacher, student = pair
    room = workshop(teacher, "Friday")
    room.notes.insert(len(room.notes), "Agenda: CRDTs\n")
    room.sheet["A2"] = "coffee"
    room.say("welcome!")
    token = room.token
    assert token is not None and token.startswith("own:")
    theirs = join_room(student, token, timeout=15)
    assert isinstance(theirs, Room) and theirs.doc.id == room.doc.id
    assert not theirs.is_host and theirs.token is None  # students do not hand out tokens
    assert wait_for(lambda: "Agenda: CRDTs" in str(theirs.notes)
                    and theirs.sheet.values() == [["item", "price", "who"],
                                                  ["coffee", None, None]]
                    and len(theirs.chat) == 1, timeout=15)
    assert str(theirs.notes).startswith("# Friday\n")
    # and back: the student writes in all three
    theirs.say("hello from a student")
    theirs.sheet["B2"] = 4
    theirs.notes.insert(len(theirs.notes), "question: why RGA?\n")
    assert wait_for(lambda: room.sheet.values()[1] == ["coffee", 4, None]
                    and "why RGA?" in str(room.notes)
                    and [m["text"] for m in room.chat.messages()]
                    == ["welcome!", "hello from a student"], timeout=15)
    assert room.chat.messages()[1]["author"] == "student"


def test_the_student_follows_the_teachers_slides(pair: tuple[Node, Node]) -> None:
    from ui_front import Front

    from ownkernel.ui.slides import DeckView

    teacher, student = pair
    room = workshop(teacher, "Friday")
    assert [s.markdown.splitlines()[0] for s in room.deck.slides] == ["# Friday"]
    second = room.deck.add("# CRDTs\n\n* merge without asking", notes="ask who used git")
    room.present()
    theirs = join_room(student, room.token, timeout=15)
    assert wait_for(lambda: theirs.deck.ids == room.deck.ids
                    and theirs.deck.presenter is not None, timeout=15)
    assert theirs.deck.presenter.node == teacher.id  # late joiner: lands on the talk
    # the room's widgets on the student's side start with the deck, which follows
    box = theirs.widgets()
    view = box.children[0]
    assert isinstance(view, DeckView)
    front = Front(view)
    front.deliver({"t": "ready"})

    def shown() -> dict:
        with front.lock:
            msgs = [m for _, m in front.sent if m.get("t") in ("snapshot", "deltas")]
        last = msgs[-1] if msgs else {}
        return (last.get("state") if last.get("t") == "snapshot"
                else last["ops"][-1]["state"]) if last else {}

    assert wait_for(lambda: shown().get("index") == 0, timeout=15)
    assert shown()["notes"] == "" and shown()["following"]  # speaker notes stay with her
    room.deck.goto(1)
    assert wait_for(lambda: shown().get("id") == second
                    and "merge without asking" in shown().get("markdown", ""), timeout=15)
    assert room.deck.slides[1].notes == "ask who used git"
    for w in box.children:
        w.close()


def test_a_room_made_before_slides_gets_a_title_slide_once(pair: tuple[Node, Node]) -> None:
    from ownkernel.apps.workshop import KIND
    from ownkernel.node.access import META_ROOT

    teacher, _ = pair
    old = teacher.new_doc(title="Old room")  # as workshop() made rooms before slides
    with old.transaction():
        old.map(META_ROOT)["app"] = KIND
        old.text("notes").insert(0, "# Old room\n")
    room = workshop(teacher, "Old room")
    assert room.doc.id == old.id and len(room.deck) == 1
    room.deck.remove(0)  # a teacher who wants no slides keeps none
    assert len(workshop(teacher, "Old room").deck) == 0


def test_rerunning_reopens_the_same_room_and_token(pair: tuple[Node, Node]) -> None:
    teacher, _ = pair
    a = workshop(teacher, "Friday")
    b = workshop(teacher, "Friday")
    assert a.doc.id == b.doc.id and a.token == b.token
    assert workshop(teacher, "Monday").doc.id != a.doc.id
    # a plain doc of the same title is not taken for a room
    teacher.new_doc(title="Tuesday")
    assert workshop(teacher, "Tuesday").doc.title == "Tuesday"
    assert len([d for d in teacher.docs() if d.title == "Tuesday"]) == 2
    # a revoked token is replaced by a fresh one
    old = a.token
    teacher.revoke(old)
    assert a.token != old


def test_bad_input_is_refused(pair: tuple[Node, Node]) -> None:
    teacher, student = pair
    with pytest.raises(ValueError, match="non-empty title"):
        workshop(teacher, "  ")
    plain = teacher.new_doc(title="plain")
    with pytest.raises(ValueError, match="not a workshop room"):
        join_room(student, teacher.invite(plain), timeout=15)
    with pytest.raises(ValueError):
        join_room(student, "own:not-a-token")


def test_qr_code_is_a_png_of_the_token_matrix() -> None:
    token = "own:" + "x" * 600
    png = qr_png(token)
    assert png is not None and png.startswith(b"\x89PNG\r\n\x1a\n")
    # read it back: IHDR size, and the pixels are the QR matrix (dark = 0)
    w, h = struct.unpack(">II", png[16:24])
    m = _qr_matrix(token)
    assert m is not None and w == h == len(m) > 21
    idat = png.index(b"IDAT")
    n = struct.unpack(">I", png[idat - 4:idat])[0]
    raw = zlib.decompress(png[idat + 4:idat + 4 + n])
    rows = [raw[i * (w + 1) + 1:(i + 1) * (w + 1)] for i in range(h)]
    assert [[b == 0 for b in r] for r in rows] == m
    assert len(png) < 4000  # small enough for a notebook output


# -- on real kernels ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def kernels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[tk.Kernel, tk.Kernel]]:
    with kernel_sandbox(tmp_path_factory.mktemp("workshop")) as home:
        root: Path = home.parent / "net"
        a = tk.net_kernel(root, "teacher")
        try:
            b = tk.net_kernel(root, "student")
        except BaseException:
            a.stop()
            raise
        try:
            yield a, b
        finally:
            a.stop()
            b.stop()


def test_own_workshop_and_own_join_bring_the_room(kernels: tuple[tk.Kernel, tk.Kernel]) -> None:
    a, b = kernels
    a.run("room = %own workshop Friday workshop")
    assert a.value("room.title") == "Friday workshop"
    html = a.value("room.header_html()")
    assert "%own join TOKEN" in html and "data:image/png;base64," in html
    token = a.value("room.token")
    a.run("room.say('welcome'); room.sheet['A2'] = 'coffee'")
    b.run(f"room = %own join {token}")
    assert b.value("type(room).__name__") == "Room"
    assert b.value("room.title") == "Friday workshop"
    b.wait_for("len(room.chat) == 1 and room.sheet.values()[1:] == [['coffee', None, None]]")
    # the room's widgets: slides, notes editor, chat, sheet, people
    assert b.value("[type(w).__name__ for w in room.widgets().children]") == \
        ["DeckView", "Editor", "Chat", "Grid", "Peers"]
    # the teacher presents: the student's room deck follows her slides
    a.run("s2 = room.deck.add('# Second'); room.present(); room.deck.goto(1)")
    b.wait_for(f"room.deck.presenter is not None and room.deck.presenter.slide == "
               f"{a.value('s2')!r} and room.deck.slides[1].markdown == '# Second'")
    # classmates in the teacher's room reach the student too, then leave on request
    a.run("cm = %own classmates 2 --seed 5 --speed 25")
    assert a.value("cm.names") == ["Ada", "Grace"]
    b.wait_for("'Ada:' in str(room.notes) and 'Grace:' in str(room.notes)", timeout=60)
    pids = a.value("cm.pids")
    assert "2 classmates left" in a.run("%own classmates stop").text
    assert all(not p for p in a.value(f"[__import__('os').path.exists('/proc/%d' % p) "
                                      f"and open('/proc/%d/stat' % p).read().split(') ')[1][0]"
                                      f" != 'Z' for p in {pids}]"))
    # errors are one line
    err = a.run("%own classmates 0", ok=False)
    assert err.status == "error" and "n must be" in str(err.reply.get("evalue"))
