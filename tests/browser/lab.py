"""JupyterLab + Debian's Chromium through Playwright, for the widget browser
tests and benchmarks/ui.py. Never downloads a browser; everything on 127.0.0.1.

A browser test module typically opens two people's pages once (``two_pages`` in a
module-scoped ``pages`` fixture) and adopts the ``screenshots`` fixture
(``screenshots = lab.screenshots``): both pages are saved when a test fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import waiting

CHROMIUM = "/usr/bin/chromium"
# Flags that behave in a headless container (see the ui notes): no sandbox as
# root, nothing that phones home.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic", "--disable-dev-shm-usage"]


def missing() -> str | None:
    """Why the browser tests cannot run here (None: they can)."""
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is absent (apt-get install chromium; .ci/run does)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]')"
    if shutil.which("jupyter-lab") is None and not _has_module("jupyterlab"):
        return "jupyterlab is not installed (pip install -e '.[test]')"
    return None


def _has_module(name: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(name) is not None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def until(pred: Callable[[], Any], timeout: float, what: str) -> Any:
    # a slower poll than the default: ``pred`` is often an HTTP request
    return waiting.until(pred, timeout, what, interval=0.05)


def notebook(path: Path, cells: list[str], kernel: str = "ownkernel") -> None:
    """A notebook of code cells on ``kernel`` (conftest.OTHER_PERSON: another user)."""
    nb = {"cells": [{"cell_type": "code", "execution_count": None, "id": f"c{i}",
                     "metadata": {}, "outputs": [], "source": src}
                    for i, src in enumerate(cells)],
          "metadata": {"kernelspec": {"display_name": kernel, "language": "python",
                                      "name": kernel}},
          "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(nb))


class Lab:
    """A JupyterLab server in ``root`` (its own config, runtime and workspace dirs)."""

    def __init__(self, root: Path, extra_args: list[str] | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.root = root
        self.port = free_port()
        self.token = os.urandom(12).hex()
        jd = root / ".jupyter"
        self.env = {**os.environ, "JUPYTER_CONFIG_DIR": str(jd / "config"),
                    "JUPYTER_RUNTIME_DIR": str(jd / "runtime"),
                    "JUPYTERLAB_WORKSPACES_DIR": str(jd / "workspaces"), **(env or {})}
        args = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1",
                f"--port={self.port}", f"--ServerApp.token={self.token}", "--allow-root",
                "--LabApp.expose_app_in_browser=True", f"--ServerApp.root_dir={root}",
                "--ServerApp.open_browser=False", *(extra_args or [])]
        self.log = open(root / "lab.log", "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=self.env, cwd=root)
        try:
            until(self._up, 90, "JupyterLab answering")
        except BaseException:
            self.stop()
            raise

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"JupyterLab exited: see {self.root / 'lab.log'}")
        try:
            with urllib.request.urlopen(f"{self.base}/api/status?token={self.token}",
                                        timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def url(self, workspace: str, nb: str) -> str:
        # its own workspace per page and ?reset: no stale layout, no two pages
        # fighting over one workspace
        return f"{self.base}/lab/workspaces/{workspace}/tree/{nb}?reset&token={self.token}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:  # shuts the kernels down cleanly (their nodes close)
                req = urllib.request.Request(f"{self.base}/api/shutdown?token={self.token}",
                                             method="POST")
                urllib.request.urlopen(req, timeout=10).close()
                self.proc.wait(30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.terminate()
                try:
                    self.proc.wait(15)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
        self.log.close()


def launch(pw: Any, extra_args: Sequence[str] = ()) -> Any:
    return pw.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *extra_args],
                              headless=True)


KERNEL_IDLE = """() => {
  const app = window.jupyterapp;
  const w = app && app.shell.currentWidget;
  const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  return !!k && k.status === 'idle';
}"""


def watch_console(page: Any) -> None:
    """Keep the page's console messages and uncaught errors (``page.own_console``,
    written next to a failed test's screenshots), the last 500."""
    lines: list[str] = []
    page.own_console = lines

    def keep(line: str) -> None:
        lines.append(f"{time.strftime('%H:%M:%S')} {line}")
        del lines[:-500]

    page.on("console", lambda m: keep(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: keep(f"pageerror: {e}"))


def open_and_run(page: Any, url: str, timeout: float = 90.0) -> None:
    """Open a notebook in Lab, wait for its kernel, run all its cells."""
    page.goto(url)
    page.wait_for_function(KERNEL_IDLE, timeout=timeout * 1000)
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")


# Text of the editor as CodeMirror shows it, without the remote-cursor labels.
EDITOR_SEL = '[data-own-widget="editor"] .cm-content'
EDITOR_TEXT = """() => {
  const c = document.querySelector('[data-own-widget="editor"] .cm-content');
  if (!c) return null;
  const lines = [...c.querySelectorAll('.cm-line')].map(l => {
    const x = l.cloneNode(true);
    x.querySelectorAll('.cm-own-caret, .cm-widgetBuffer').forEach(e => e.remove());
    return x.textContent;
  });
  return lines.join('\\n');
}"""


def wait_editor_text(page: Any, want: str, timeout_ms: float) -> None:
    page.wait_for_function(f"() => ({EDITOR_TEXT})() === {json.dumps(want)}",
                           timeout=timeout_ms)


# -- two people's pages, screenshots ---------------------------------------------------------

class Pages:
    """The pages of :func:`two_pages`: ``a`` (notebook A) and ``b`` (notebook B)."""

    def __init__(self, pages: dict[str, Any], shots: Path, server: Lab) -> None:
        self.pages, self.shots, self.server = pages, shots, server
        self.a, self.b = pages["A"], pages["B"]

    def screenshot_all(self, directory: Path, stem: str) -> None:
        keep_pages(self.pages, directory, stem)


def keep_pages(pages: dict[str, Any], directory: Path, stem: str) -> None:
    """Each page's screenshot and browser console (what the widgets logged)."""
    for name, page in pages.items():
        with contextlib.suppress(Exception):  # a page that crashed must not hide the failure
            page.screenshot(path=str(directory / f"{stem}-{name}.png"), full_page=True)
        lines = getattr(page, "own_console", [])
        (directory / f"{stem}-{name}.console.txt").write_text("\n".join(lines) + "\n")


@contextlib.contextmanager
def two_pages(root: Path, cells_a: list[str], cells_b: list[str],
              ready: Callable[[str, Any], None], *, shots: str,
              browser_args: Sequence[str] = (), init: dict[str, str] | None = None,
              viewport: tuple[int, int] = (1100, 900),
              lab_args: Sequence[str] = ()) -> Iterator[Pages]:
    """Two people in one JupyterLab under ``root``: notebook A on the ownkernel kernel and
    B on conftest.OTHER_PERSON's (another user, in a kernel sandbox), each opened in its
    own Chromium context with all its cells run; ``ready(name, page)`` waits until a page
    shows what the tests need, A before B (B usually joins what A made). The kernels'
    nodes listen on 127.0.0.1, fresh ports. ``init``: page name -> a script run before the
    page's own. Failure screenshots go to a fresh directory named after ``shots``."""
    from conftest import OTHER_PERSON, kernel_sandbox
    from playwright.sync_api import sync_playwright

    with contextlib.ExitStack() as stack:
        stack.enter_context(kernel_sandbox(root / "sandbox"))
        env = stack.enter_context(pytest.MonkeyPatch.context())
        env.setenv("OWNKERNEL_LISTEN", "tcp://127.0.0.1:0")
        work = root / "work"
        work.mkdir()
        notebook(work / "A.ipynb", cells_a)
        notebook(work / "B.ipynb", cells_b, OTHER_PERSON)
        server = Lab(work, ["--YDocExtension.disable_rtc=True", *lab_args])
        stack.callback(server.stop)
        browser = launch(stack.enter_context(sync_playwright()), browser_args)
        stack.callback(browser.close)
        pages: dict[str, Any] = {}
        for name in ("A", "B"):
            width, height = viewport
            page = pages[name] = browser.new_context(
                viewport={"width": width, "height": height}).new_page()
            if init and name in init:
                page.add_init_script(init[name])
            watch_console(page)
            try:
                open_and_run(page, server.url(name.lower(), f"{name}.ipynb"))
                ready(name, page)
            except BaseException:
                where = Path(tempfile.mkdtemp(prefix=f"ownkernel-{shots}-setup-shots-"))
                keep_pages(pages, where, "setup")
                print(f"page {name} did not get ready: screenshots, consoles and "
                      f"lab.log in {where}", file=sys.__stderr__)
                shutil.copy(server.root / "lab.log", where / "lab.log")
                raise
        yield Pages(pages, Path(tempfile.mkdtemp(prefix=f"ownkernel-{shots}-shots-")), server)


@pytest.fixture(autouse=True)
def screenshots(request: pytest.FixtureRequest, pages: Pages) -> Iterator[None]:
    """Adopted by a module (``screenshots = lab.screenshots``) whose ``pages`` fixture gives
    :class:`Pages`: after a failed test both pages go to ``pages.shots`` (the path is
    printed); with OWNKERNEL_UI_SHOTS=<dir> after a passing test too, into that dir."""
    failed = request.session.testsfailed
    yield
    # the call's report is logged before fixtures are torn down
    keep = os.environ.get("OWNKERNEL_UI_SHOTS")
    if request.session.testsfailed > failed:
        pages.screenshot_all(pages.shots, request.node.name)
        with contextlib.suppress(OSError):
            shutil.copy(pages.server.root / "lab.log", pages.shots / "lab.log")
        print(f"screenshots, consoles and lab.log of the failure in {pages.shots}",
              file=sys.__stderr__)
    elif keep:
        pages.screenshot_all(Path(keep), request.node.name)


def keep_shot(target: Any, name: str, **kwargs: Any) -> None:
    """With OWNKERNEL_UI_SHOTS=<dir>: a screenshot of a page or locator, kept as <dir>/name
    (pictures for the docs); nothing otherwise."""
    keep = os.environ.get("OWNKERNEL_UI_SHOTS")
    if keep:
        target.screenshot(path=os.path.join(keep, name), **kwargs)


def type_both_ways(pages: Pages, timeout_ms: float) -> None:
    """A types into its editor, B sees it; B types at the end, A sees it (with a
    two-byte and a four-byte UTF-8 character, an astral one for UTF-16)."""
    a, b = pages.a, pages.b
    a.click(EDITOR_SEL)
    a.keyboard.type("hi é😀")
    wait_editor_text(b, "hi é😀", timeout_ms)
    b.click(EDITOR_SEL)
    b.keyboard.press("End")
    b.keyboard.type(" ok😀")
    wait_editor_text(a, "hi é😀 ok😀", timeout_ms)
    assert b.evaluate(EDITOR_TEXT) == "hi é😀 ok😀"
