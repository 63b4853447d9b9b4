"""ownkernel.node: the Node (identity + store + documents), doc handles, invites."""

from ownkernel.node.handle import DocHandle, RootProxy
from ownkernel.node.invite import Invite, InviteError
from ownkernel.node.node import Node

__all__ = ["DocHandle", "Invite", "InviteError", "Node", "RootProxy"]
