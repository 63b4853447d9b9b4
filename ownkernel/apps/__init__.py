"""Applications built on the node's public API: simulated classmates, workshop rooms,
a shared budget.

    from ownkernel.apps import budget
    b = budget(doc, categories=["Food", "Rent"], people=["ann", "ben"])
"""

from __future__ import annotations

from ownkernel.apps.budget import Budget, budget, settle
from ownkernel.apps.classmates import Classmates, classmates
from ownkernel.apps.deck import Deck  # issue #12
from ownkernel.apps.workshop import Room, join_room, workshop

__all__ = ["Budget", "Classmates", "Deck", "Room", "budget", "classmates", "join_room",
           "settle", "workshop"]
