"""The kernel's port of CodeMirror's change-set algebra (ownkernel/ui/utf16.py)
against CodeMirror itself: random change sets mapped and composed both ways,
the results compared as JSON. Needs Node.js and ``widgets/node_modules``
(``cd widgets && npm ci``); without them only the Python-side laws run."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ownkernel.ui.utf16 import ChangeSet, _add, _add_insert, units

WIDGETS = Path(__file__).resolve().parent.parent / "widgets"
ALPHABET = ["a", "b", "é", "😀", "\n", "中"]


def _text(rnd: random.Random) -> str:
    return "".join(rnd.choice(ALPHABET) for _ in range(rnd.randint(0, 3)))


def random_changes(rnd: random.Random, doc: str) -> ChangeSet:
    """A few non-overlapping replacements, ascending, at character boundaries."""
    n = len(doc)
    k = min(rnd.randint(0, 4) * 2, (n + 1) // 2 * 2)
    cuts = sorted(rnd.sample(range(n + 1), k))
    cs = ChangeSet([], [])
    pos = 0
    for i in range(0, len(cuts), 2):
        f, t = cuts[i], cuts[i + 1] if rnd.random() < 0.6 else cuts[i]
        _add(cs.sections, units(doc[pos:f]), -1)
        ins = _text(rnd)
        _add(cs.sections, units(doc[f:t]), units(ins))
        _add_insert(cs.inserted, cs.sections, ins)
        pos = t
    _add(cs.sections, units(doc[pos:]), -1)
    return cs


def apply(doc: str, cs: ChangeSet) -> str:
    b = doc.encode("utf-16-le", "surrogatepass")
    for f, t, ins in reversed(cs.edits()):
        b = b[:2 * f] + ins.encode("utf-16-le", "surrogatepass") + b[2 * t:]
    return b.decode("utf-16-le", "surrogatepass")


def cases(seed: int, n: int) -> list[tuple[str, ChangeSet, ChangeSet, ChangeSet]]:
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        doc = "".join(rnd.choice(ALPHABET) for _ in range(rnd.randint(0, 12)))
        a, b = random_changes(rnd, doc), random_changes(rnd, doc)
        c = random_changes(rnd, apply(doc, a))
        out.append((doc, a, b, c))
    return out


def test_mapping_converges_and_composing_applies_in_turn() -> None:
    for doc, a, b, c in cases(1, 3000):
        # the property the kernel's bridge and @codemirror/collab rely on
        assert apply(apply(doc, a), b.map(a)) == apply(apply(doc, b), a.map(b, True))
        assert apply(doc, a.compose(c)) == apply(apply(doc, a), c)
        assert ChangeSet.from_json(a.to_json()).to_json() == a.to_json()
    with pytest.raises(ValueError, match="cannot map"):
        ChangeSet.single(3, 0, 0, "x").map(ChangeSet.single(4, 0, 0, "y"))
    with pytest.raises(ValueError, match="cannot compose"):
        ChangeSet.single(3, 0, 0, "x").compose(ChangeSet.single(3, 0, 0, "y"))


JS = """
import { ChangeSet } from "@codemirror/state";
import { readFileSync } from "node:fs";
const cases = JSON.parse(readFileSync(process.argv[2], "utf8"));
const out = cases.map(([a, b, c]) => {
  const A = ChangeSet.fromJSON(a), B = ChangeSet.fromJSON(b), C = ChangeSet.fromJSON(c);
  return [B.map(A).toJSON(), A.map(B, true).toJSON(), A.compose(C).toJSON()];
});
console.log(JSON.stringify(out));
"""


@pytest.mark.skipif(shutil.which("node") is None
                    or not (WIDGETS / "node_modules" / "@codemirror" / "state").is_dir(),
                    reason="needs Node.js and widgets/node_modules (npm ci)")
def test_port_gives_what_codemirror_gives(tmp_path: Path) -> None:
    cs = cases(2, 3000)
    data: list[Any] = [[a.to_json(), b.to_json(), c.to_json()] for _, a, b, c in cs]
    (tmp_path / "cases.json").write_text(json.dumps(data))
    script = WIDGETS / ".changeset-check.mjs"  # inside widgets/ so imports resolve
    script.write_text(JS)
    try:
        res = subprocess.run(["node", str(script), str(tmp_path / "cases.json")],
                             capture_output=True, text=True, timeout=120, check=True)
    finally:
        script.unlink()
    for (_, a, b, c), (ba, ab, ac) in zip(cs, json.loads(res.stdout)):
        assert b.map(a).to_json() == ba
        assert a.map(b, True).to_json() == ab
        assert a.compose(c).to_json() == ac
