"""`ownkernel invite / join / docs / new / pair`: documents and the people who share them.

Each asks the node running the profile first (node/control.py, through
``cli_common.control``) and opens the profile itself only when none runs.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from ownkernel.cli_common import CliError, cli_settings, control, last_addresses, open_node


def cmd_invite(args: argparse.Namespace) -> int:
    from ownkernel.kernel import cells

    live = control(args, "invite", doc=" ".join(args.doc), write=not args.read)
    if live is not None:  # the running node: its live addresses go in the token
        print(live["token"])
        return 0
    args.doc = " ".join(args.doc)
    with open_node(cli_settings(args, network=False), network=False) as node:
        try:
            doc = cells.find_doc(node, args.doc)
        except cells.DocNotFound as exc:
            same = [d.id for d in node.docs() if d.title == args.doc]
            if len(same) > 1:  # as the running node says it: ids and authors
                raise CliError(node.describe_docs(same, args.doc)) from None
            raise CliError(str(exc)) from None
        # No network here, so the node has no live address: put in the ones
        # it listens on when it runs (sticky port), so the token is dialable.
        print(node.invite(doc, write=not args.read, addresses=last_addresses(node)))
    return 0


def cmd_join(args: argparse.Namespace) -> int:
    from ownkernel.kernel import cells

    live = control(args, "join", timeout=max(args.timeout, 0) + 30, token=args.token,
                   wait=args.timeout)
    if live is not None:  # the running node joins: it keeps syncing afterwards
        if not live.get("received") and args.timeout > 0:
            raise CliError(f"joined {live['doc'][:12]} but no peer sent its content within "
                           f"{args.timeout:g} s (is the inviter online?); the running node "
                           f"keeps trying")
        print(live["doc"])
        return 0
    # Networked with the profile's own settings (its usual listen address, so
    # the sticky port recorded for it stays the same).
    with open_node(cli_settings(args, network=True)) as node:
        try:
            doc = node.join(args.token, timeout=0)
        except (ValueError, PermissionError) as exc:
            raise CliError(f"cannot join: {' '.join(str(exc).split())}") from None
        if args.timeout > 0 and getattr(node, "network", None) is not None:
            try:
                node.join(args.token, timeout=args.timeout, strict=True)
            except TimeoutError:
                raise CliError(
                    f"joined {cells.doc_id(doc)[:12]} but no peer sent its content within "
                    f"{args.timeout:g} s (is the inviter online?)") from None
            _settle(doc)
        print(cells.doc_id(doc))
    return 0


def _settle(doc: Any, quiet: float = 0.3, limit: float = 3.0) -> None:
    """Wait (bounded) until the doc's version stops moving: the fetch is complete."""
    end = time.monotonic() + limit
    last = dict(doc.version)
    still = time.monotonic()
    while time.monotonic() < end:
        time.sleep(0.05)
        now = dict(doc.version)
        if now != last:
            last, still = now, time.monotonic()
        elif time.monotonic() - still >= quiet:
            return



def cmd_docs(args: argparse.Namespace) -> int:
    live = control(args, "docs")
    if live is not None:
        rows = [(d["id"], d["title"], d["owner"], d.get("role") or "-") for d in live["docs"]]
    else:
        with open_node(cli_settings(args, network=False), network=False) as node:
            rows = [(h.hex, h.title, h.owner.hex(), h.role or "-") for h in node.docs()]
    for doc_id, title, owner, role in rows:
        print(f"{doc_id[:12]}  {role:<6}  {owner[:8]}  {title or '(untitled)'}")
    if not rows:
        print("no documents (ownkernel new TITLE)", file=sys.stderr)
    return 0


def cmd_new(args: argparse.Namespace) -> int:
    title = " ".join(args.title)
    live = control(args, "new", title=title)
    if live is not None:
        print(live["doc"])
        return 0
    with open_node(cli_settings(args, network=False), network=False) as node:
        print(node.new_doc(title=title).hex)
    return 0



# -- users and devices (ownkernel/node/pairing.py) -------------------------------
def cmd_pair(args: argparse.Namespace) -> int:
    """``ownkernel pair [TOKEN]``: with TOKEN this profile becomes a device of the
    token's user; without, the profile's running node prints a pairing token."""
    live = control(args, "pair", timeout=args.timeout + 30, token=args.token or "",
                   wait=args.timeout)
    if live is None and not args.token:
        raise CliError("a pairing token is only good while its node runs: start the "
                       "profile's node (a kernel, `ownkernel node`) and run this again")
    if live is None:
        with open_node(cli_settings(args, network=True)) as node:
            try:
                u = node.pair_with(args.token, timeout=args.timeout)
            except (ValueError, PermissionError, TimeoutError) as exc:
                raise CliError(f"cannot pair: {' '.join(str(exc).split())}") from None
            live = {"user": u.id.hex(), "name": u.name}
    print(live.get("token") or f"paired: now a device of user {live['name']} "
          f"({live['user'][:12]})")
    return 0


def add_commands(sub: Any) -> None:
    """invite, join, docs, new, pair."""
    s = sub.add_parser("invite", help="print an invite token for a document",
                       description="Print an invite token for DOC (id, id prefix or title; "
                       "a title needs no quotes). Asks the profile's running node when there "
                       "is one (its live addresses go into the token).")
    s.add_argument("doc", metavar="DOC", nargs="+")
    s.add_argument("--read", action="store_true", help="read-only access")
    s.add_argument("--profile", help="profile name or directory")
    s.set_defaults(func=cmd_invite)

    s = sub.add_parser("join", help="join a document from an invite token",
                       description="Join the document of TOKEN: connect to the inviter, "
                       "fetch the document, print its id. Fails (exit 1) if nothing "
                       "arrives within the timeout. When the profile's node runs (a kernel, "
                       "`ownkernel node`), that node joins.")
    s.add_argument("token", metavar="TOKEN")
    s.add_argument("--profile", help="profile name or directory")
    s.add_argument("--timeout", type=float, default=15.0, metavar="S",
                   help="seconds to wait for the content (default 15; 0: record the "
                   "invite only, fetch later)")
    # Networking settings come from the profile's config and OWNKERNEL_* like a
    # kernel's; these attributes keep cli_settings() uniform.
    s.set_defaults(name=None, listen=None, bootstrap=None, relay=False)
    s.set_defaults(func=cmd_join)

    s = sub.add_parser("docs", help="list a profile's documents",
                       description="List DOCs: id, your role, owner, title (from the "
                       "running node when one holds the profile).")
    s.add_argument("--profile", help="profile name or directory")
    s.set_defaults(func=cmd_docs)

    s = sub.add_parser("new", help="create a document, print its id",
                       description="Create a document titled TITLE (no quotes needed) and "
                       "print its id; the profile's running node creates it when there is one.")
    s.add_argument("title", metavar="TITLE", nargs="+")
    s.add_argument("--profile", help="profile name or directory")
    s.set_defaults(func=cmd_new)

    s = sub.add_parser("pair", help="pair devices of one user",
                       description="With TOKEN (from `node.pair()`, `%own pair` or "
                       "`ownkernel pair` on the other device): this profile becomes a device "
                       "of that token's user and receives its documents. Without: the "
                       "profile's running node prints a one-time pairing token.")
    s.add_argument("token", metavar="TOKEN", nargs="?")
    s.add_argument("--profile", help="profile name or directory")
    s.add_argument("--timeout", type=float, default=15.0, metavar="S",
                   help="seconds to wait for the other device (default 15)")
    s.set_defaults(func=cmd_pair, name=None, listen=None, bootstrap=None, relay=False)
