"""Kernel start-up: ownkernel (with its node) against the stock python3 kernel.

For each start we measure, from `KernelManager.start_kernel()`:
  first reply  – until the kernel answers its first execute_request (`1`)
  node ready   – (ownkernel only) until a cell that uses `node` answers, i.e.
                 the background node start has finished as well
The two kernels are started alternately in the same run (after one warm-up
start each, not counted) and the medians are compared. Everything runs with a
temporary OWNKERNEL_HOME / JUPYTER_PATH / IPYTHONDIR; the node listens on
loopback (OWNKERNEL_LISTEN=tcp://127.0.0.1:0), so "node ready" includes
binding its CurveZMQ socket and starting its network thread. The benchmark
fails if a node is not listening: the figure would measure the wrong thing.

Bytecode: the stock kernel's modules come with .pyc files (pip compiles them
at install time), so by default the kernel runs a copy of this checkout's
`ownkernel` with its .pyc files compiled the same way, as a `pip install`ed
ownkernel would. Without that, under PYTHONDONTWRITEBYTECODE=1 (set in some
containers and CI images) every start would compile ~9,000 lines of ownkernel
source again (~100 ms CPU) — a cost no installed kernel pays. `--from-source`
measures exactly that: the checkout itself, with whatever .pyc files the
environment lets Python keep.

    python benchmarks/kernel_start.py [--runs 7] [--from-source] [--docs 1000]

``--docs N``: the kernel's profile holds N small documents (issue #15 target 3:
start with 1,000 docs within 1.1x the stock kernel).
"""

from __future__ import annotations

import argparse
import compileall
import functools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from jupyter_client.manager import KernelManager  # noqa: E402

from ownkernel.kernel.install import install  # noqa: E402

TIMEOUT = 60.0


def _reply(kc: Any, msg_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + TIMEOUT
    while True:
        msg = kc.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
        if msg["parent_header"].get("msg_id") == msg_id:
            return msg


def one_start(kernel_name: str, code_dir: Path, cwd: str) -> tuple[float, float | None, str]:
    """(first reply s, node ready s or None, node address or '')."""
    t0 = time.perf_counter()
    km = KernelManager(kernel_name=kernel_name)
    # The kernels' own stderr (TCP warnings) would drown the figures. `cwd`: not
    # the checkout, which `python -m` would put ahead of PYTHONPATH.
    km.start_kernel(stderr=subprocess.DEVNULL, cwd=cwd)
    kc = km.client()
    kc.start_channels()
    try:
        reply = _reply(kc, kc.execute("1", silent=False))
        first = time.perf_counter() - t0
        assert reply["content"]["status"] == "ok", reply["content"]
        if kernel_name == "python3":
            return first, None, ""
        code = "str(getattr(node, 'address', '') or '')"
        where = "__import__('ownkernel').__file__"
        reply = _reply(kc, kc.execute("", user_expressions={"a": code, "f": where}))
        # user_expressions are evaluated after the (empty) cell: the node is ready then.
        ready = time.perf_counter() - t0
        expr = reply["content"]["user_expressions"]["a"]
        assert expr["status"] == "ok", expr
        address = expr["data"]["text/plain"].strip("'")
        assert address.startswith("tcp://127.0.0.1:"), f"node not listening: {address!r}"
        loaded = reply["content"]["user_expressions"]["f"]["data"]["text/plain"].strip("'")
        assert Path(loaded).is_relative_to(code_dir), f"kernel ran {loaded}, not {code_dir}"
        return first, ready, address
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=7, help="timed starts per kernel (default 7)")
    p.add_argument("--from-source", action="store_true",
                   help="run the checkout itself instead of a byte-compiled copy (see above)")
    p.add_argument("--docs", type=int, default=0,
                   help="documents in the kernel's profile (made after the warm-up start)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="ownkernel-bench-") as tmp:
        prefix = Path(tmp) / "prefix"
        install(prefix=str(prefix))
        code_dir = REPO
        if not args.from_source:
            code_dir = Path(tmp) / "site"
            shutil.copytree(REPO / "ownkernel", code_dir / "ownkernel",
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            if not compileall.compile_dir(str(code_dir / "ownkernel"), quiet=1):
                raise SystemExit("byte-compiling the ownkernel copy failed")
        os.environ.update(
            JUPYTER_PATH=str(prefix / "share" / "jupyter"),
            OWNKERNEL_HOME=str(Path(tmp) / "home"),
            OWNKERNEL_LISTEN="tcp://127.0.0.1:0",
            IPYTHONDIR=str(Path(tmp) / "ipython"),
            PYTHONPATH=os.pathsep.join([str(code_dir), os.environ.get("PYTHONPATH", "")]),
        )
        os.environ.pop("OWNKERNEL_PROFILE", None)
        start = functools.partial(one_start, code_dir=code_dir, cwd=tmp)
        start("python3")  # warm-up: page cache, .pyc files, identity key creation
        start("ownkernel")
        if args.docs:
            from ownkernel import Node

            with Node("default", network=False) as node, node.lock, node.store.batch():
                for i in range(args.docs):
                    node.new_doc(f"doc {i}").text().insert(0, f"content of doc {i}")
            start("ownkernel")  # warm again: the page cache now holds the bigger store
        stock: list[float] = []
        own_first: list[float] = []
        own_ready: list[float] = []
        address = ""
        for _ in range(args.runs):
            stock.append(start("python3")[0])
            first, ready, address = start("ownkernel")
            own_first.append(first)
            own_ready.append(ready or 0.0)

    def med(xs: list[float]) -> float:
        return statistics.median(xs)

    print(f"kernel start, median of {args.runs} starts each (alternating), {args.docs} docs, "
          f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, ownkernel "
          f"{'from source (checkout)' if args.from_source else 'byte-compiled (as installed)'}")
    print(f"  python3   first execute reply : {med(stock) * 1000:7.0f} ms")
    print(f"  ownkernel first execute reply : {med(own_first) * 1000:7.0f} ms   "
          f"({med(own_first) / med(stock):.2f}x python3)")
    print(f"  ownkernel node ready          : {med(own_ready) * 1000:7.0f} ms   "
          f"({med(own_ready) / med(stock):.2f}x python3)")
    print(f"  node listening on             : {address}")
    print(f"  all python3   (ms): {[round(x * 1000) for x in stock]}")
    print(f"  all ownkernel (ms): {[round(x * 1000) for x in own_first]}")


if __name__ == "__main__":
    main()
