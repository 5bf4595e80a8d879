"""Reading azure-mgmt SDK models: absent fields are None, enums print oddly, ids differ in case."""

from __future__ import annotations

from enum import Enum
from typing import Any

__all__ = ["dig", "same_id", "text"]


def dig(obj: Any, *names: str) -> Any:
    """``obj.a.b.c``, or None as soon as a step is missing (SDK models leave absent fields as None)."""
    for name in names:
        if obj is None:
            return None
        obj = getattr(obj, name, None)
    return obj


def text(value: Any) -> str:
    """An SDK value as plain text: enum members (``str`` mix-ins print as ``Cls.MEMBER``) give their value."""
    return str(value.value) if isinstance(value, Enum) else str(value)


def same_id(a: Any, b: Any) -> bool:
    """ARM ids compare case-insensitively (the SDK and ARM disagree on ``resourceGroups``' case)."""
    return isinstance(a, str) and isinstance(b, str) and a.lower() == b.lower()
