"""Write the "ownkernel" kernelspec (kernel.json + logos) where Jupyter finds it.

The wheel also ships a kernelspec under share/jupyter/kernels/ownkernel (hatch
shared-data), so `pip install` alone is enough in a venv; `ownkernel install`
is for user-level or custom installs and pins the interpreter that ran it.
"""

from __future__ import annotations

import json
import shutil
import struct
import sys
import tempfile
import zlib
from pathlib import Path
from typing import Any

__all__ = ["DISPLAY_NAME", "KERNEL_NAME", "install", "kernel_json", "logo_png"]

KERNEL_NAME = "ownkernel"
DISPLAY_NAME = "ownkernel (Python 3)"
RESOURCES = Path(__file__).parent / "resources"
LOGO_SIZES = (32, 64)


def kernel_json(
    display_name: str = DISPLAY_NAME, python: str | None = None, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """The kernel.json content; `python` defaults to the running interpreter."""
    spec: dict[str, Any] = {
        "argv": [python or sys.executable, "-m", "ownkernel.kernel", "-f", "{connection_file}"],
        "display_name": display_name,
        "language": "python",
        "metadata": {"debugger": True},
    }
    if env:
        spec["env"] = dict(env)
    return spec


def install(
    user: bool = False,
    sys_prefix: bool = False,
    prefix: str | None = None,
    name: str = KERNEL_NAME,
    display_name: str = DISPLAY_NAME,
    env: dict[str, str] | None = None,
) -> str:
    """Install the kernelspec; returns the directory it was written to.

    Exactly like `ipython kernel install`: user → ~/.local/share/jupyter,
    sys_prefix → this environment, prefix → PREFIX/share/jupyter; none of them →
    the system-wide location (may need root).
    """
    from jupyter_client.kernelspec import KernelSpecManager

    if sum(bool(x) for x in (user, sys_prefix, prefix)) > 1:
        raise ValueError("choose at most one of user, sys_prefix and prefix")
    if sys_prefix:
        prefix = sys.prefix
    with tempfile.TemporaryDirectory(prefix="ownkernel-spec-") as tmp:
        spec_dir = Path(tmp) / name
        write_spec_dir(spec_dir, kernel_json(display_name, env=env))
        return str(
            KernelSpecManager().install_kernel_spec(
                str(spec_dir), kernel_name=name, user=user, prefix=prefix
            )
        )


def write_spec_dir(spec_dir: Path, spec: dict[str, Any]) -> None:
    """kernel.json plus the two logos, in a fresh directory."""
    spec_dir.mkdir(parents=True, exist_ok=True)
    (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1) + "\n", encoding="utf-8")
    for size in LOGO_SIZES:
        target = spec_dir / f"logo-{size}x{size}.png"
        source = RESOURCES / target.name
        if source.exists():
            shutil.copyfile(source, target)
        else:  # a source tree without the committed PNGs still installs a logo
            target.write_bytes(logo_png(size))


def logo_png(size: int) -> bytes:
    """A small RGBA PNG: a teal disc with a white ring and centre dot (a node).

    Drawn with plain arithmetic so no image library is needed; 2x2 supersampling
    smooths the edges.
    """
    teal, white = (31, 122, 140), (255, 255, 255)
    c = (size - 1) / 2
    r_disc, r_ring_out, r_ring_in, r_dot = size * 0.48, size * 0.33, size * 0.25, size * 0.11
    rows = []
    for y in range(size):
        row = bytearray([0])  # filter type 0 for each scanline
        for x in range(size):
            acc = [0.0, 0.0, 0.0, 0.0]
            for sy in (-0.25, 0.25):
                for sx in (-0.25, 0.25):
                    d = ((x + sx - c) ** 2 + (y + sy - c) ** 2) ** 0.5
                    if d > r_disc:
                        continue
                    rgb = white if (r_ring_in <= d <= r_ring_out or d <= r_dot) else teal
                    for i in range(3):
                        acc[i] += rgb[i]
                    acc[3] += 255
            n = acc[3] / 255
            px = [round(acc[i] / n) if n else 0 for i in range(3)] + [round(acc[3] / 4)]
            row += bytes(px)
        rows.append(bytes(row))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"".join(rows), 9))
        + chunk(b"IEND", b"")
    )


if __name__ == "__main__":
    # Regenerate the committed logos: python -m ownkernel.kernel.install
    for s in LOGO_SIZES:
        (RESOURCES / f"logo-{s}x{s}.png").write_bytes(logo_png(s))
        print(f"wrote {RESOURCES / f'logo-{s}x{s}.png'}")
