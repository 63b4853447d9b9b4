"""Applications built on the node's public API (simulated classmates, workshop rooms)."""

from ownkernel.apps.classmates import Classmates, classmates

__all__ = ["Classmates", "classmates"]
