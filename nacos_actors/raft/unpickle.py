"""Unpickling that cannot run code: what pysyncobj reads from the network and from disk.

pysyncobj pickles (protocol 2) every message, every log entry and its journal's meta file. A
stock unpickler runs whatever callable a pickle names, so any peer that can reach the Raft port
could run code. The messages and entries we use hold only plain data: dicts, lists, tuples,
str, int, float, bool, None and bytes. Protocol 2 encodes a bytes value as
`_codecs.encode(text, 'latin1')`, and the empty bytes as `bytes()`; those two are the only
globals allowed, each replaced by a checked stand-in that can do nothing else (no other
codec, no `bytes(10**12)`). Any other global raises `pickle.UnpicklingError`. Pure functions;
any thread.
"""

from __future__ import annotations

import io
import pickle
from typing import IO, Any


def _latin1_bytes(text: object, encoding: object = "latin1") -> bytes:
    """What protocol 2 means by `_codecs.encode(text, 'latin1')`: text back to its bytes."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("only _codecs.encode(str, 'latin1') is allowed")
    return text.encode("latin1")


def _empty_bytes(*args: object) -> bytes:
    """What protocol 2 means by `bytes()`: the empty bytes, and nothing else."""
    if args:
        raise pickle.UnpicklingError("only bytes() without arguments is allowed")
    return b""


# Protocol 2 names `builtins` as `__builtin__` (the unpickler maps it back only in its own
# find_class, which ours replaces).
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("_codecs", "encode"): _latin1_bytes,
    ("__builtin__", "bytes"): _empty_bytes,
    ("builtins", "bytes"): _empty_bytes,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals of ALLOWED_GLOBALS (as checked stand-ins)
    and raises `pickle.UnpicklingError` for any other, before anything is called."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed") from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not allowed")


def restricted_loads(data: bytes | bytearray | memoryview | str) -> Any:
    """Plain data from a pickle, or `pickle.UnpicklingError` (or another ValueError-like error
    of a malformed pickle). Stands in for `pysyncobj.pickle.loads` and `pysyncobj.journal.loads`;
    unlike them it never retries with the pure-Python unpickler."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    return RestrictedUnpickler(io.BytesIO(data)).load()


def restricted_load(file: IO[bytes]) -> Any:
    """Plain data from a pickle read from `file`; stands in for `pysyncobj.pickle.load`."""
    return RestrictedUnpickler(file).load()
