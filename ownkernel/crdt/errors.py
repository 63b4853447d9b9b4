"""Errors raised by the CRDT layer.

Every error caused by bad input is a ``ValueError`` subclass, so callers that
only want "was this input acceptable?" can catch ``ValueError``.
"""

from __future__ import annotations


class CRDTError(ValueError):
    """Base class of input errors raised by :mod:`ownkernel.crdt`."""


class DecodeError(CRDTError):
    """Bytes that are not a well-formed change, bundle or saved document."""


class ConflictError(CRDTError):
    """A change contradicts what is already known (same actor and seq, other content)."""


class InvalidChangeError(CRDTError):
    """A well-formed change that cannot be integrated (e.g. it refers to unknown ids)."""


class InvalidValueError(CRDTError):
    """A local value that is not a tree of CBOR-native values (see :mod:`.values`)."""
