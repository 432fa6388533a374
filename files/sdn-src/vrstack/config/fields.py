"""Field types of the config model.

Each field both validates a JSON value (returning its normal form, or raising
`FieldError` with the path of the bad value) and describes itself as JSON Schema, so
the server's checks and the OpenAPI document come from the same definition.
"""

from __future__ import annotations

import ipaddress
import re
import uuid as uuidlib
from dataclasses import dataclass, field
from typing import Any


class FieldError(Exception):
    """A value in a request body is invalid; `field` is its path, e.g. subnets[0].cidr."""

    def __init__(self, field: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.status = status


def valid_text(value: str) -> bool:
    """False for a string with a lone surrogate (JSON allows "\\ud800"): it has no UTF-8
    form, so no store, log or peer could take it."""
    if value.isascii():
        return True
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


@dataclass(frozen=True)
class Field:
    doc: str = ""
    required: bool = False
    default: Any = None

    def check(self, value: Any, path: str) -> Any:
        raise NotImplementedError

    def schema(self) -> dict[str, Any]:
        raise NotImplementedError

    def described(self) -> dict[str, Any]:
        s = self.schema()
        if self.doc:
            s["description"] = self.doc
        return s


@dataclass(frozen=True)
class Str(Field):
    max_len: int = 255
    pattern: str | None = None

    def check(self, value: Any, path: str) -> Any:
        if not isinstance(value, str) or not valid_text(value):
            raise FieldError(path, "must be a string (of valid Unicode)")
        if len(value) > self.max_len:
            raise FieldError(path, f"must be at most {self.max_len} characters")
        # ASCII: in the document's (JSON Schema) patterns \d is 0-9 only, not any digit.
        if self.pattern and not re.fullmatch(self.pattern, value, re.ASCII):
            raise FieldError(path, f"must match {self.pattern}")
        return value

    def schema(self) -> dict[str, Any]:
        s: dict[str, Any] = {"type": "string", "maxLength": self.max_len}
        if self.pattern:
            s["pattern"] = f"^(?:{self.pattern})$"
        return s


@dataclass(frozen=True)
class Int(Field):
    low: int = 0
    high: int = 2**32 - 1

    def check(self, value: Any, path: str) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            raise FieldError(path, "must be an integer")
        if not self.low <= value <= self.high:
            raise FieldError(path, f"must be between {self.low} and {self.high}")
        return value

    def schema(self) -> dict[str, Any]:
        return {"type": "integer", "minimum": self.low, "maximum": self.high}


@dataclass(frozen=True)
class Bool(Field):
    def check(self, value: Any, path: str) -> Any:
        if not isinstance(value, bool):
            raise FieldError(path, "must be true or false")
        return value

    def schema(self) -> dict[str, Any]:
        return {"type": "boolean"}


@dataclass(frozen=True)
class Enum(Field):
    values: tuple[str, ...] = ()

    def check(self, value: Any, path: str) -> Any:
        if value not in self.values:
            raise FieldError(path, f"must be one of {', '.join(self.values)}")
        return value

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "enum": list(self.values)}


@dataclass(frozen=True)
class IP(Field):
    """An IPv4 or IPv6 address, stored in its compressed form."""

    def check(self, value: Any, path: str) -> Any:
        try:
            if not isinstance(value, str):
                raise ValueError
            addr = ipaddress.ip_address(value)
        except ValueError:
            raise FieldError(path, "must be an IPv4 or IPv6 address") from None
        # fe80::1%eth0 would be another key than fe80::1 for the same address.
        if getattr(addr, "scope_id", None):
            raise FieldError(path, "must not have a scope (%zone)")
        return str(addr)

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]}


@dataclass(frozen=True)
class CIDR(Field):
    """A network prefix with no host bits set, e.g. 198.18.10.0/24."""

    def check(self, value: Any, path: str) -> Any:
        try:
            # A prefix length, as the document says: not a netmask, not a scope.
            if not isinstance(value, str) or not re.fullmatch(r"[0-9a-fA-F.:]+/[0-9]{1,3}", value):
                raise ValueError
            return str(ipaddress.ip_network(value, strict=True))
        except ValueError:
            raise FieldError(
                path, "must be a prefix such as 198.18.10.0/24, host bits zero"
            ) from None

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "pattern": r"^[0-9a-fA-F.:]+/[0-9]{1,3}$"}


MAC_RE = r"[0-9a-f]{2}(:[0-9a-f]{2}){5}"


@dataclass(frozen=True)
class MAC(Field):
    def check(self, value: Any, path: str) -> Any:
        if not isinstance(value, str) or not re.fullmatch(MAC_RE, value.lower()):
            raise FieldError(path, "must be a MAC address such as 02:00:5e:00:00:01")
        return value.lower()

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "pattern": r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$"}


@dataclass(frozen=True)
class Ref(Field):
    """The UUID of another object of type `target`; the API checks that it exists."""

    target: str = ""

    def check(self, value: Any, path: str) -> Any:
        try:
            if not isinstance(value, str):
                raise ValueError
            return str(uuidlib.UUID(value))
        except ValueError:
            raise FieldError(path, f"must be the UUID of a {self.target}") from None

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "format": "uuid", "x-ref-type": self.target}


@dataclass(frozen=True)
class ListOf(Field):
    item: Field = field(default_factory=Field)
    max_items: int = 1024
    min_items: int = 0
    unique: bool = False

    def check(self, value: Any, path: str) -> Any:
        if not isinstance(value, list):
            raise FieldError(path, "must be a list")
        if not self.min_items <= len(value) <= self.max_items:
            raise FieldError(path, f"must have {self.min_items} to {self.max_items} items")
        out = [self.item.check(v, join(path, i)) for i, v in enumerate(value)]
        if self.unique:
            seen: list[Any] = []
            for i, v in enumerate(out):
                if v in seen:
                    raise FieldError(join(path, i), "duplicates an earlier item")
                seen.append(v)
        return out

    def schema(self) -> dict[str, Any]:
        s: dict[str, Any] = {"type": "array", "items": self.item.described()}
        s["maxItems"] = self.max_items
        if self.min_items:
            s["minItems"] = self.min_items
        if self.unique:
            s["uniqueItems"] = True
        return s


@dataclass(frozen=True)
class Range(Field):
    """An inclusive [start, end] pair of integers, as the fabric file writes ranges."""

    low: int = 0
    high: int = 2**32 - 1

    def check(self, value: Any, path: str) -> Any:
        if not isinstance(value, list) or len(value) != 2:
            raise FieldError(path, "must be a list [start, end]")
        for i, v in enumerate(value):
            Int(low=self.low, high=self.high).check(v, join(path, i))
        if value[0] > value[1]:
            raise FieldError(path, "start must not be greater than end")
        return list(value)

    def schema(self) -> dict[str, Any]:
        item = {"type": "integer", "minimum": self.low, "maximum": self.high}
        return {"type": "array", "items": item, "minItems": 2, "maxItems": 2}


@dataclass(frozen=True)
class Obj(Field):
    """A JSON object with known keys; unknown keys are refused so typos are not lost."""

    fields: dict[str, Field] = field(default_factory=dict)

    def check(self, value: Any, path: str) -> Any:
        if not isinstance(value, dict):
            raise FieldError(path, "must be an object")
        return check_fields(self.fields, value, path)

    def schema(self) -> dict[str, Any]:
        return fields_schema(self.fields)


def check_fields(fields: dict[str, Field], value: dict[str, Any], path: str) -> dict[str, Any]:
    for key in value:
        if key not in fields:
            raise FieldError(join(path, key), "is not a known field")
    out: dict[str, Any] = {}
    for key, spec in fields.items():
        if key in value and value[key] is not None:
            out[key] = spec.check(value[key], join(path, key))
        elif spec.required:
            raise FieldError(join(path, key), "is required")
        elif spec.default is not None:
            out[key] = spec.default() if callable(spec.default) else spec.default
    return out


def fields_schema(fields: dict[str, Field]) -> dict[str, Any]:
    props = {}
    for k, f in fields.items():
        s = f.described()
        if not f.required:
            # Optional fields may be sent as null, which means "not set".
            s = {"anyOf": [s, {"type": "null"}], "description": s.get("description", "")}
        props[k] = s
    out: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
    required = [k for k, f in fields.items() if f.required]
    if required:
        out["required"] = required
    return out


def refs_in(spec: Field, value: Any, path: str) -> list[tuple[str, str, str]]:
    """Every (path, target type, uuid) reference inside a validated value."""
    if value is None:
        return []
    if isinstance(spec, Ref):
        return [(path, spec.target, value)]
    if isinstance(spec, ListOf):
        return [r for i, v in enumerate(value) for r in refs_in(spec.item, v, join(path, i))]
    if isinstance(spec, Obj):
        return [r for k, f in spec.fields.items() for r in refs_in(f, value.get(k), join(path, k))]
    return []
