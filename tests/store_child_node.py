"""Child process for the store tests (run as a script, not collected by pytest).

    store_child_node.py commit PROFILE START   commit "line N" changes forever, printing
                                               N after each commit has returned
    store_child_node.py hold PROFILE           open the node, print "ready", wait on stdin
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ownkernel import Node  # noqa: E402


def main() -> None:
    mode, profile = sys.argv[1], sys.argv[2]
    with Node(profile=profile) as node:
        if mode == "hold":
            print("ready", node.short_id, flush=True)
            sys.stdin.readline()
            return
        docs = node.docs()
        doc = docs[0] if docs else node.new_doc("crash")
        text = doc.text("body")
        log = doc.log("log")
        n = int(sys.argv[3])
        print("start", doc.id.hex(), flush=True)
        while True:
            n += 1
            if n % 3:
                text.insert(len(text), f"line {n}\n")  # one durable commit
            else:
                with doc.transaction():  # one durable commit of two ops
                    text.insert(len(text), f"line {n}\n")
                    log.append(n)
            # Printed only after commit returned: this change must survive a SIGKILL.
            print(n, flush=True)


if __name__ == "__main__":
    main()
