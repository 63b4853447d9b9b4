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

    python benchmarks/kernel_start.py [--runs 7]
"""

from __future__ import annotations

import argparse
import os
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


def one_start(kernel_name: str) -> tuple[float, float | None, str]:
    """(first reply s, node ready s or None, node address or '')."""
    t0 = time.perf_counter()
    km = KernelManager(kernel_name=kernel_name)
    # The kernels' own stderr (TCP warnings) would drown the figures.
    km.start_kernel(stderr=subprocess.DEVNULL)
    kc = km.client()
    kc.start_channels()
    try:
        reply = _reply(kc, kc.execute("1", silent=False))
        first = time.perf_counter() - t0
        assert reply["content"]["status"] == "ok", reply["content"]
        if kernel_name == "python3":
            return first, None, ""
        code = "str(getattr(node, 'address', '') or '')"
        reply = _reply(kc, kc.execute("", user_expressions={"a": code}))
        # user_expressions are evaluated after the (empty) cell: the node is ready then.
        ready = time.perf_counter() - t0
        expr = reply["content"]["user_expressions"]["a"]
        assert expr["status"] == "ok", expr
        address = expr["data"]["text/plain"].strip("'")
        assert address.startswith("tcp://127.0.0.1:"), f"node not listening: {address!r}"
        return first, ready, address
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=7, help="timed starts per kernel (default 7)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="ownkernel-bench-") as tmp:
        prefix = Path(tmp) / "prefix"
        install(prefix=str(prefix))
        os.environ.update(
            JUPYTER_PATH=str(prefix / "share" / "jupyter"),
            OWNKERNEL_HOME=str(Path(tmp) / "home"),
            OWNKERNEL_LISTEN="tcp://127.0.0.1:0",
            IPYTHONDIR=str(Path(tmp) / "ipython"),
            PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        )
        os.environ.pop("OWNKERNEL_PROFILE", None)
        one_start("python3")  # warm-up: page cache, .pyc files, identity key creation
        one_start("ownkernel")
        stock: list[float] = []
        own_first: list[float] = []
        own_ready: list[float] = []
        address = ""
        for _ in range(args.runs):
            stock.append(one_start("python3")[0])
            first, ready, address = one_start("ownkernel")
            own_first.append(first)
            own_ready.append(ready or 0.0)

    def med(xs: list[float]) -> float:
        return statistics.median(xs)

    print(f"kernel start, median of {args.runs} starts each (alternating), "
          f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
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
