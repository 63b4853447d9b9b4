"""Small applications built on ownkernel documents and widgets.

    from ownkernel.apps import budget
    b = budget(doc, categories=["Food", "Rent"], people=["ann", "ben"])
"""

from __future__ import annotations

from ownkernel.apps.budget import Budget, budget, settle

__all__ = ["Budget", "budget", "settle"]
