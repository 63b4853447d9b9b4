"""The teaching notebooks run top to bottom on the real ownkernel kernel (nbclient).

The kernelspec goes into a temporary prefix on JUPYTER_PATH and the kernel's
node lives under a temporary OWNKERNEL_HOME: nothing touches the user's data.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from conftest import kernel_sandbox
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("notebooks")
    with kernel_sandbox(root):
        yield root


def _text(output: dict) -> str:
    if output.get("output_type") == "stream":
        return output.get("text", "")
    return output.get("data", {}).get("text/plain", "")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_on_ownkernel(path: Path, kernel_env: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "ownkernel"
    client = NotebookClient(nb, timeout=120, kernel_name="ownkernel",
                            resources={"metadata": {"path": str(kernel_env)}})
    client.execute()  # raises CellExecutionError on the first failing cell
    outputs = "\n".join(_text(o) for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "Traceback" not in outputs
    if path.name == "01-first-steps.ipynb":
        # the neighbour's edit arrived, both texts merged, sheet and chat synced
        assert "Neighbour was here. Hello from this notebook. And so was I." in outputs
        assert "[['coffee', 12.5], ['cake', 20], ['total', 32.5]]" in outputs
        assert "who brings the cake?" in outputs and "me!" in outputs
        assert "hello from a shared cell" in outputs
        html = [o for c in nb.cells for o in c.get("outputs", [])
                if "text/html" in o.get("data", {})]
        assert html, "rich reprs render as HTML in a notebook"
    if path.name == "02-live-widgets.ipynb":
        # the roots and the peer list became widgets; the neighbour's edits arrived
        views = [o for c in nb.cells for o in c.get("outputs", [])
                 if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
        assert len(views) >= 4, "editor, markdown editor, chat and peers show as widgets"
        assert "The neighbour says hi 😀. Type here" in outputs
        assert "[('Grace', False)]" in outputs  # the rename reached node.peers too
    check_course_notebook(path.name, nb, outputs)


# -- the course's notebooks with simulated classmates (ownkernel/apps) ----------------------
def _html(nb: nbformat.NotebookNode) -> str:
    return "\n".join(o["data"]["text/html"] for c in nb.cells for o in c.get("outputs", [])
                     if "text/html" in o.get("data", {}))


def _views(nb: nbformat.NotebookNode) -> int:
    return sum(1 for c in nb.cells for o in c.get("outputs", [])
               if "application/vnd.jupyter.widget-view+json" in o.get("data", {}))


def check_course_notebook(name: str, nb: nbformat.NotebookNode, outputs: str) -> None:
    """What each notebook of the course must show when run top to bottom."""
    if name == "03-chat.ipynb":
        assert "Ada: @" in outputs  # mentioned, she answered
        assert "'Grace']" in outputs  # asked, Grace added a row to the sheet
        assert _views(nb) >= 1, "the chat shows as a widget"
    elif name == "05-shared-doc.ipynb":
        assert "Teacher: welcome, everyone!" in outputs
        assert all(f"\n{n}:" in outputs for n in ("Ada", "Grace", "Alan"))
        assert "(typed offline)" in outputs and "'offline', 'online'" in outputs
        assert "# shared notes" in outputs  # the export
    elif name == "06-history-and-comments.ipynb":
        # the doc right after our line, seen again through at(); blame by three authors
        assert "me: history is kept on my disk\n" in outputs
        assert all(f"('{n}', " in outputs for n in ("Ada", "Grace", "me"))
        # undo took back only our line, the classmates' text stayed; redo, restore, undo
        for line in ("undone, the mistake is gone: True", "the classmates' lines are kept: True",
                     "redone, it is back: True", "and undone again: True",
                     "as it was after our line: True",
                     "undo of the restore brings it all back: True"):
            assert line in outputs, line
        assert ("'history': all of it, even deleted text? -> yes: deletions are kept as "
                "tombstones") in outputs  # the anchor held while text went in above it
        assert "cell (1, 1): why 7? -> ['it went up'], resolved: True" in outputs  # moved down
        assert _views(nb) >= 4, "editor, history, blame editor and comments show as widgets"
    elif name == "07-slides.ipynb":
        assert "1 image(s) in the doc, 3 slides" in outputs  # stored once, by hash
        assert "Ada sees" in outputs and "presenting slide 0" in outputs
        assert "Ada follows to slide 2" in outputs
        assert "Ada is still on '## Try it', now slide 0" in outputs  # follows the id
        assert "notes for ## Try it -> Leave this up while people scan it." in outputs
        assert "presenting now: None" in outputs
        assert _views(nb) >= 2, "the presenter's and Ada's decks show as widgets"
    elif name == "09-workshop-teacher.ipynb":
        html = _html(nb)
        assert "%own join TOKEN" in html and "data:image/png;base64," in html  # token, QR
        assert "'Ada']" in outputs and "'Alan']" in outputs
        assert "3 classmates left" in outputs
        assert "presenting: ## Today" in outputs  # the room's deck, on the second slide
        assert _views(nb) >= 1, "the room shows its widgets"
    elif name == "10-workshop-student.ipynb":
        assert "Ada:" in outputs and "following along" in outputs and "'juice', 6" in outputs
        assert "the teacher presents slide 1: ## Today" in outputs  # the deck came along
        assert "DeckView" in outputs  # first of the room's widgets (text/plain of the view)
        assert _views(nb) >= 1, "the room shows its widgets"


def test_binder_postbuild_installs_the_kernel(tmp_path: Path) -> None:
    """binder/postBuild's kernel registration works (the pip step is covered by
    test_kernel's fresh-venv install)."""
    import subprocess
    import sys

    script = (REPO / "binder" / "postBuild").read_text()
    assert os.access(REPO / "binder" / "postBuild", os.X_OK)
    assert subprocess.run(["bash", "-n", str(REPO / "binder" / "postBuild")]).returncode == 0
    install_line = next(line for line in script.splitlines() if "ownkernel install" in line)
    args = install_line.split("ownkernel install", 1)[1].split()
    assert args == ["--sys-prefix"]
    # the same command, pointed at a scratch prefix instead of the image's sys.prefix
    p = subprocess.run([sys.executable, "-m", "ownkernel", "install", "--prefix", str(tmp_path)],
                       capture_output=True, text=True, cwd=REPO)
    assert p.returncode == 0, p.stderr
    spec = tmp_path / "share" / "jupyter" / "kernels" / "ownkernel" / "kernel.json"
    assert spec.exists() and "ownkernel.kernel" in spec.read_text()
