"""Applications built on the node's public API (simulated classmates, workshop rooms)."""

from ownkernel.apps.classmates import Classmates, classmates
from ownkernel.apps.workshop import Room, join_room, workshop

__all__ = ["Classmates", "Room", "classmates", "join_room", "workshop"]
