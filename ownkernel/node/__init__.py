"""ownkernel.node: the Node (identity + store + documents), doc handles, invites."""

from ownkernel.node.grants import Grant, Invite, InviteError
from ownkernel.node.handle import DocHandle, RootProxy
from ownkernel.node.node import Node

__all__ = ["DocHandle", "Grant", "Invite", "InviteError", "Node", "RootProxy"]
