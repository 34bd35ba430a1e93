"""Argument checks: every value is checked here before it reaches ctypes, which would
otherwise wrap out-of-range integers silently and turn wrong types into wrong data.

Errors: ``TypeError`` for a wrong type, :class:`~eventstore.InvalidArgument` (a
``ValueError``) for a value out of its domain, ``OverflowError`` for an integer too
large for its C type. Each message names the argument and what it accepts.
"""

from __future__ import annotations

import operator
import os
import uuid
from typing import Any, Union

from . import _native
from ._errors import InvalidArgument

U64_RANGE = "0..2**64-1 (18446744073709551615)"
EXPECTED_DOMAIN = (
    "ANY (-2), NO_STREAM (-1), STREAM_EXISTS (-4) or a version in 0..2**63-1"
)

PathArg = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]


def _int(value: Any, name: str) -> int:
    if type(value) is int:
        return value
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not bool")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, not {type(value).__name__}") from None


def u64(value: Any, name: str) -> int:
    """An ``uint64_t`` argument: ``0 <= value <= 2**64 - 1``."""
    v = _int(value, name)
    if v < 0:
        raise InvalidArgument(f"{name} must be in {U64_RANGE}, got {v}")
    if v > _native.U64_MAX:
        raise OverflowError(f"{name} must be in {U64_RANGE}, got {v}")
    return v


def flag(value: Any, name: str) -> bool:
    """A ``bool`` argument (a truthy object is refused: ``backward="no"`` is a bug)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, not {type(value).__name__}")
    return value


def page_size(value: Any, name: str = "page_size") -> int:
    """A page size: ``1 <= value <= 2**64 - 1``."""
    v = _int(value, name)
    if not 1 <= v <= _native.U64_MAX:
        raise InvalidArgument(f"{name} must be in 1..2**64-1, got {v}")
    return v


def expected_version(value: Any) -> int:
    """An expected version: one of the three constants or ``0 <= v <= 2**63 - 1``."""
    v = _int(value, "expected_version")
    if v > _native.I64_MAX:
        raise OverflowError(f"expected_version must be {EXPECTED_DOMAIN}, got {v}")
    if v < 0 and v not in (
        _native.ES_EXPECTED_ANY,
        _native.ES_EXPECTED_NO_STREAM,
        _native.ES_EXPECTED_STREAM_EXISTS,
    ):
        raise InvalidArgument(f"expected_version must be {EXPECTED_DOMAIN}, got {v}")
    return v


def uuid_bytes(value: Any, name: str) -> bytes:
    """A ``uuid.UUID`` as the 16 bytes of an ``es_uuid``."""
    if not isinstance(value, uuid.UUID):
        hint = " (convert it with uuid.UUID(text))" if isinstance(value, str) else ""
        raise TypeError(f"{name} must be a uuid.UUID, not {type(value).__name__}{hint}")
    return value.bytes


def optional_uuid(value: Any, name: str) -> None:
    if value is not None and not isinstance(value, uuid.UUID):
        raise TypeError(f"{name} must be a uuid.UUID or None, not {type(value).__name__}")


def event_type(value: Any) -> bytes:
    """An event type's UTF-8 bytes (emptiness and length are the library's checks)."""
    if not isinstance(value, str):
        hint = " (decode it first)" if isinstance(value, (bytes, bytearray)) else ""
        raise TypeError(f"event_type must be a str, not {type(value).__name__}{hint}")
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidArgument(
            f"event_type {value!r} is not valid UTF-8: {e.reason} at index {e.start}"
        ) from None


def bytes_like(value: Any, name: str) -> Any:
    """A payload or metadata: anything with the buffer protocol, not a str."""
    if type(value) is bytes:
        return value
    try:
        memoryview(value)
    except TypeError:
        hint = " (encode it first)" if isinstance(value, str) else ""
        raise TypeError(
            f"{name} must be bytes-like (bytes, bytearray, memoryview), "
            f"not {type(value).__name__}{hint}"
        ) from None
    return value


def path(value: Any) -> bytes:
    """A file name for ``es_open``: ``str``, ``bytes`` or ``os.PathLike``, without NUL."""
    try:
        fspath = os.fspath(value)
    except TypeError:
        raise TypeError(
            f"path must be str, bytes or os.PathLike, not {type(value).__name__}"
        ) from None
    encoded = os.fsencode(fspath)
    if b"\0" in encoded:
        raise InvalidArgument(f"path must not contain a NUL byte (embedded null byte): {fspath!r}")
    return encoded
