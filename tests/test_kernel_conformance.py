"""Jupyter's own kernel conformance suite (jupyter_kernel_test) against "ownkernel".

The kernelspec is installed into a temporary prefix that is put on
JUPYTER_PATH, and the kernel's node lives under a temporary OWNKERNEL_HOME:
nothing here touches the real user's Jupyter data or ownkernel profiles.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import jupyter_kernel_test as jkt
import pytest
from conftest import kernel_sandbox

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", autouse=True)
def ownkernel_spec(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("conformance")
    with kernel_sandbox(root):
        yield root / "prefix"


class TestOwnKernelConformance(jkt.KernelTests):
    kernel_name = "ownkernel"
    language_name = "python"
    file_extension = ".py"

    code_hello_world = "print('hello, world')"
    code_stderr = "import sys; print('test', file=sys.stderr)"

    completion_samples = [
        {"text": "zi", "matches": {"zip"}},
        {"text": "%ow", "matches": {"%own"}},
    ]
    complete_code_samples = ["1", "print('hello, world')", "def f(x):\n  return x*2\n\n",
                             "%own status"]
    incomplete_code_samples = ["print('''hello", "def f(x):\n  x*2",
                               "%%shared demo\nfor i in range(3):"]
    invalid_code_samples = ["import = 7q"]

    code_page_something = "zip?"
    code_generate_error = "raise ValueError('boom')"

    code_execute_result = [
        {"code": "1+2+3", "result": "6"},
        {"code": "[n*n for n in range(1, 4)]", "result": "[1, 4, 9]"},
        {"code": "%own help whoami", "result": "%own whoami\n    this node's id, name and profile"},
    ]
    code_display_data = [
        {"code": "from IPython.display import HTML, display; display(HTML('<b>test</b>'))",
         "mime": "text/html"},
        {"code": "from IPython.display import Math, display; display(Math('\\\\frac{1}{2}'))",
         "mime": "text/latex"},
        {"code": "from ownkernel.kernel.display import Table\n"
                 "display(Table(['a'], [[1]], title='t'))", "mime": "text/html"},
    ]
    code_history_pattern = "1?2*"
    # "range" is left out as for the stock python3 kernel: IPython numbers the
    # current session 0 in range replies, which the suite reads as a mismatch.
    supported_history_operations = ("tail", "search")
    code_inspect_sample = "zip"
    code_clear_output = "from IPython.display import clear_output; clear_output()"

    def test_ownkernel_identity(self) -> None:
        """kernel_info says which kernel this is and how to find the node."""
        self.flush_channels()
        self.kc.kernel_info()
        content = self.kc.get_shell_msg(timeout=jkt.TIMEOUT)["content"]
        self.assertEqual(content["implementation"], "ownkernel")
        from ownkernel import __version__

        self.assertEqual(content["implementation_version"], __version__)
        self.assertEqual(content["language_info"]["name"], "python")
        self.assertIn("%own help", content["banner"])
