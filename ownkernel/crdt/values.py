"""Values are trees: what a map, list, log or sheet cell may hold.

A value is ``None``, ``bool``, ``int``, ``float``, ``str``, ``bytes``, or a
``list`` or ``dict`` of values (dict keys: ``str``, ``bytes``, ``int``,
``float``, ``bool`` or ``None``, the scalars cbor2 round-trips as keys),
nested at most :data:`MAX_DEPTH` deep, every container reachable once.

Why it is enforced on both sides: cbor2 decodes the shareable/sharedref tags
(28/29) into Python objects that share or contain themselves, and other tags
into datetimes, sets, ``CBORTag`` objects and the like, all without calling a
``tag_hook``. A single such value accepted from a peer used to make every
later ``save()``, ``changes()`` and ``commit()`` raise on every replica
(issue #8, hole 4). Locally, a cyclic Python list, a str with lone
surrogates or an object cbor2 cannot encode would do the same from inside.
So decoded values are checked in place (:func:`check_decoded`) and local
values are copied into fresh trees (:func:`tree_copy`), which also keeps the
caller's later mutations out of the document.
"""

from __future__ import annotations

from typing import Any

from .errors import InvalidValueError

MAX_DEPTH = 100
_SCALARS = frozenset((type(None), bool, int, float, str, bytes))
_KEYS = _SCALARS


def _problem(v: Any) -> str:
    name = type(v).__name__
    if name == "CBORTag":
        return f"a CBOR tag {getattr(v, 'tag', '?')} value"
    return f"a {name} value (values are None, bool, int, float, str, bytes, list, dict)"


def _utf8(s: str) -> bool:
    if s.isascii():
        return True
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_key(k: Any) -> None:
    """A map key: a str that UTF-8 can encode (TypeError / InvalidValueError)."""
    if type(k) is not str and not isinstance(k, str):
        raise TypeError("map keys are str")
    if not _utf8(k):
        raise InvalidValueError(f"map key {k!r} has lone surrogates and cannot be stored")


def check_decoded(v: Any, seen: set[int]) -> str | None:
    """What makes decoded value ``v`` not a tree, or None when it is one.

    ``seen`` holds the ids of the containers met so far in the same blob,
    so a container referenced twice (sharedref tag, or a cycle) is caught
    across values too.
    """
    t = type(v)
    if t is str or t is int or t is float or t is bytes or t is bool or v is None:
        return None  # scalars: the common case, no stack
    stack = [(v, 1)]
    while stack:
        x, depth = stack.pop()
        t = type(x)
        if t in _SCALARS:
            continue
        if t is not list and t is not dict:
            return _problem(x)
        if id(x) in seen:
            return "a shared or cyclic reference (CBOR tags 28/29)"
        seen.add(id(x))
        if depth > MAX_DEPTH:
            return f"nesting deeper than {MAX_DEPTH}"
        if t is list:
            for y in x:
                if type(y) not in _SCALARS:
                    stack.append((y, depth + 1))
        else:
            for k, y in x.items():
                if type(k) not in _KEYS:
                    return f"a dict key that is {_problem(k)}"
                stack.append((y, depth + 1))
    return None


def values_are_trees(items: list[Any]) -> bool:
    """Every item of a decoded list insert is a tree (fast path's check)."""
    seen: set[int] = {id(items)}
    return all(check_decoded(x, seen) is None for x in items)


def tree_copy(v: Any, what: str = "value") -> Any:
    """A fresh copy of a local value, checked to be a tree; raises InvalidValueError.

    Containers shared inside ``v`` (the same list twice) are copied twice,
    which is what the encoded form says anyway; a cycle is refused. Tuples
    become lists (what a replica decodes them as).
    """
    return _copy(v, what, [], 1)


def _copy(v: Any, what: str, path: list[int], depth: int) -> Any:
    t = type(v)
    if t is str:
        if not _utf8(v):
            raise InvalidValueError(f"{what}: a str with lone surrogates cannot be stored")
        return v
    if t in _SCALARS:
        return v
    if t is tuple:  # encoded as an array like a list, so it reads back as one
        t = list
    elif t is not list and t is not dict:
        raise InvalidValueError(f"{what} is not a tree: it holds {_problem(v)}")
    if id(v) in path:
        raise InvalidValueError(f"{what} is not a tree: it contains itself")
    if depth > MAX_DEPTH:
        raise InvalidValueError(f"{what} is nested deeper than {MAX_DEPTH} levels")
    path.append(id(v))
    if t is list:
        out: Any = [_copy(x, what, path, depth + 1) for x in v]
    else:
        out = {}
        for k, x in v.items():
            if type(k) not in _KEYS or (type(k) is str and not _utf8(k)):
                raise InvalidValueError(f"{what} has a dict key that is {_problem(k)}")
            out[k] = _copy(x, what, path, depth + 1)
    path.pop()
    return out


def checked_text(text: Any) -> Any:
    """Text to insert: a str UTF-8 can encode (lone surrogates would make
    every later commit and save raise). Anything else is returned as is, for
    the caller's own type check."""
    if isinstance(text, str) and not _utf8(text):
        raise InvalidValueError("text with lone surrogates cannot be stored")
    return text


def checked_content(content: Any) -> Any:
    """Content of a local sequence insert: a str as is, a list copied as trees."""
    if type(content) is list:
        return tree_copy(content, "list item")
    return content
