"""Where a kernel's widget channel is, and its frame limit: shared by the kernel side
(``ownkernel/ui/channel.py``) and the jupyter-server extension
(``ownkernel/serverext/widgets.py``).

Standard library only, and outside ``ownkernel.ui``: the server extension must not
import the widget package (IPython, ipywidgets, anywidget) into the jupyter-server
process.
"""

from __future__ import annotations

import os

__all__ = ["MAX_LINE", "POINTER", "pointer_path"]

MAX_LINE = 64 * 1024 * 1024  # bytes: a snapshot of a big text is one line
POINTER = "ownkernel-widget-{}.json"


def pointer_path(runtime_dir: str, kernel_id: str) -> str:
    """Where a kernel says where its widget socket is (read by the server extension)."""
    return os.path.join(runtime_dir, POINTER.format(kernel_id))
