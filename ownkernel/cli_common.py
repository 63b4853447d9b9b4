"""What the `ownkernel` commands share: one-line errors (``CliError``), a profile's
settings, opening its node, and asking the node that runs it (the control socket)."""

from __future__ import annotations

import argparse
import logging
from typing import Any

log = logging.getLogger("ownkernel")


class CliError(Exception):
    """A failure to report as one line with exit code 1."""


def cli_settings(args: argparse.Namespace, network: bool) -> Any:
    from ownkernel.kernel.settings import SettingsError, load_settings

    overrides: dict[str, Any] = {"profile": getattr(args, "profile", None)}
    if network:
        overrides.update(name=args.name, listen=args.listen or None,
                         bootstrap=args.bootstrap or None, relay=args.relay or None)
    try:
        settings = load_settings(overrides=overrides)
    except SettingsError as exc:
        raise CliError(str(exc)) from None
    if not network:
        from dataclasses import replace

        # One-shot commands never listen or dial out: they read the profile and leave.
        settings = replace(settings, listen=None, bootstrap=[], relay=False)
    return settings


def open_node(settings: Any, strict: bool = False, network: bool = True) -> Any:
    from ownkernel.kernel.nodehost import NodeUnavailable, make_node

    try:
        node, notes = make_node(settings, settings.profile_dir(), strict=strict,
                                network=network)
    except ImportError as exc:
        raise CliError(f"the ownkernel Node is not available: {exc}") from None
    except NodeUnavailable as exc:
        raise CliError(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - store errors already say what to do
        raise CliError(" ".join(str(exc).split()) or type(exc).__name__) from None
    for n in notes:
        log.warning("%s", n)
    return node


def ident(node: Any) -> str:
    value = getattr(node, "id", "?")
    return value.hex() if isinstance(value, bytes) else str(value)


def last_addresses(node: Any) -> list[str]:
    """Where this profile's node listened last time it ran networked.

    A node given `tcp://host:0` reuses that port next time when it is free
    (sticky port), so an invite made offline with these addresses reaches the
    profile's kernel or `ownkernel node` once it runs again.
    """
    from ownkernel.node.config import advertised

    try:
        said = node.store.get_setting("net.advertised")
        endpoints = node.store.get_setting("net.endpoints") or []
    except Exception:  # noqa: BLE001 - an older store: invite without addresses
        return []
    if isinstance(said, list) and all(isinstance(a, str) for a in said):
        return list(said)  # what it announced (--advertise, interface addresses)
    try:  # an older profile: wildcard binds become this machine's addresses
        return advertised([str(e) for e in endpoints], None, node.id)
    except ValueError:
        return []


def control(args: argparse.Namespace, op: str, timeout: float = 30.0,
            **kw: Any) -> dict[str, Any] | None:
    """Ask the node running this profile (node/control.py); None when none runs."""
    from ownkernel.node.control import ControlError, ControlUnavailable, request

    profile = cli_settings(args, network=False).profile_dir()
    try:
        return request(profile, op, timeout=timeout, **kw)
    except ControlUnavailable:
        return None
    except ControlError as exc:
        what = {"join": "cannot join", "invite": "cannot invite"}.get(op, op)
        raise CliError(f"{what}: {exc} (answered by the node running {profile})") from None
    except TimeoutError as exc:
        raise CliError(str(exc)) from None

