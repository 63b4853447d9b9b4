"""Pure CRDT documents: no sockets, threads, files or wall clocks.

>>> from ownkernel.crdt import Doc
>>> a = Doc(); t = a.text("body"); t.insert(0, "hi"); change = a.commit()
>>> b = Doc(); b.apply([change]); str(b.text("body"))
'hi'
"""

from .codec import ChangeInfo, change_info
from .doc import Doc, DocEvent
from .errors import ConflictError, CRDTError, DecodeError, InvalidChangeError, InvalidValueError
from .log import Log
from .map import Counter, Map
from .text import Delta, List, Text

__all__ = [
    "CRDTError",
    "ChangeInfo",
    "ConflictError",
    "Counter",
    "DecodeError",
    "Delta",
    "Doc",
    "DocEvent",
    "InvalidChangeError",
    "InvalidValueError",
    "List",
    "Log",
    "Map",
    "Text",
    "change_info",
]
