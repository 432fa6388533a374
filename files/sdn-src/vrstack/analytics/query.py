"""Queries over flows, logs, status and counters: a JSON body in, parameterised SQL out.

Column names only ever come from the record definitions (`records.KINDS`) and operators
and functions from the tables below; every value from the request is a bound parameter.
A bad query raises `FieldError` naming the part of the body that is wrong.

Paging is by offset over a snapshot: the first page notes the highest row id, and every
later page reads only rows up to it with the same resolved time range, so records that
arrive meanwhile neither shift the pages nor appear twice. The cursor carries the offset,
that snapshot and a digest of the query; it is refused with another query.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..config.fields import FieldError, valid_text
from .records import TABLES, Column, Kind, blob_addr, cidr_range

SOURCE = Column("source", "str", "The reporting node (the ingest URL's source)", max_len=128)
MAX_LIMIT = 10_000
DEFAULT_LIMIT = 100
COMPARE = {"=": "=", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
OPS = (*COMPARE, "prefix", "contains", "in")
AGGREGATES = ("count", "sum", "avg", "min", "max")
_AGG_RE = re.compile(r"(count|sum|avg|min|max)\(\s*([a-z_*]*)\s*\)")
_BUCKET_RE = re.compile(r"bucket\(([a-z_]+),(\d+)\)")
# Time buckets for series (bytes per minute…); a fixed set, so the SQL holds only our text.
BUCKETS = {n: str(n) for n in (1, 10, 60, 300, 600, 3600, 86400)}
_REL_RE = re.compile(r"-(\d+(?:\.\d+)?)([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_KEYS = {"table", "select", "where", "since", "until", "group_by", "sort", "limit", "cursor"}


def columns(kind: Kind) -> dict[str, Column]:
    """Every column a query on this kind's table may name."""
    return {"source": SOURCE, **{c.name: c for c in kind.columns}}


def q(name: str) -> str:
    """A quoted identifier; only ever called with names from the record definitions."""
    return '"' + name + '"'


def parse_time(value: Any, field: str, now: float) -> float:
    """Seconds since the epoch, an RFC 3339 time with a zone, "now" or "-15m" (s/m/h/d)."""
    if isinstance(value, bool):
        raise FieldError(field, "must be a time")
    if isinstance(value, int | float):
        return _finite(value, field)
    if isinstance(value, str):
        if value == "now":
            return now
        m = _REL_RE.fullmatch(value)
        if m:
            return _finite(now - float(m.group(1)) * _UNITS[m.group(2)], field)
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            when = None
        if when is not None:
            if when.tzinfo is None:
                raise FieldError(field, "needs a time zone, e.g. 2026-11-30T10:00:00Z")
            return when.timestamp()
    raise FieldError(
        field, "must be seconds since the epoch, an RFC 3339 time, 'now' or like '-15m'"
    )


def _finite(value: float, field: str) -> float:
    try:
        if math.isfinite(value):
            return float(value)
    except OverflowError:  # an integer beyond any float
        pass
    raise FieldError(field, "must be a finite time")


@dataclass(frozen=True)
class Item:
    """One selected value: its output label, SQL expression and how to print it."""

    label: str
    sql: str
    aggregate: bool
    convert: Callable[[Any], Any] | None


def _converter(col: Column | None) -> Callable[[Any], Any] | None:
    if col is None:
        return None
    if col.type == "addr":
        return lambda v: None if v is None else blob_addr(v)
    if col.type == "conns":
        return lambda v: json.loads(v)
    return None


def _bucket(text: str, field: str, cols: dict[str, Column]) -> Item | None:
    """`bucket(ts,60)`: the time field rounded down to a multiple of 60 s, or None."""
    m = _BUCKET_RE.fullmatch(text.replace(" ", ""))
    if not m:
        return None
    name, size = m.group(1), int(m.group(2))
    col = cols.get(name)
    if col is None or col.type != "time":
        raise FieldError(field, f"bucket() needs a time field, not {name!r}")
    if size not in BUCKETS:
        raise FieldError(field, f"bucket size must be one of {', '.join(BUCKETS.values())}")
    width = BUCKETS[size]
    return Item(
        f"bucket({name},{width})", f"(CAST({q(name)} / {width} AS INTEGER) * {width})", False, None
    )


def _item(text: Any, field: str, cols: dict[str, Column]) -> Item:
    if not isinstance(text, str):
        raise FieldError(field, "must be a field name or an aggregate like sum(bytes)")
    if text in cols:
        return Item(text, q(text), False, _converter(cols[text]))
    bucket = _bucket(text, field, cols)
    if bucket is not None:
        return bucket
    m = _AGG_RE.fullmatch(text.replace(" ", ""))
    if not m:
        raise FieldError(
            field,
            f"unknown field {text!r}; fields: {', '.join(cols)}; "
            f"aggregates: {', '.join(a + '(field)' for a in AGGREGATES)}, count()",
        )
    fn, arg = m.groups()
    if fn == "count" and arg in ("", "*"):
        return Item("count()", "COUNT(*)", True, None)
    col = cols.get(arg)
    if col is None:
        raise FieldError(field, f"unknown field {arg!r} in {fn}(); fields: {', '.join(cols)}")
    if fn in ("sum", "avg") and not col.numeric:
        raise FieldError(field, f"{fn}() needs a numeric field; {arg} is not")
    if col.type == "conns":
        raise FieldError(field, f"{arg} cannot be aggregated")
    conv = _converter(col) if fn in ("min", "max") else None
    return Item(f"{fn}({arg})", f"{fn.upper()}({q(arg)})", True, conv)


def _value(col: Column, value: Any, field: str, now: float) -> Any:
    if col.type == "time":
        return parse_time(value, field, now)
    if col.type == "enum" and isinstance(value, str) and valid_text(value):
        return value  # comparing with a value outside the enum just matches nothing
    return col.check(value, field)


def _prefix_end(prefix: str) -> str | None:
    """The least string above every string that starts with `prefix`; None when there is
    none (the prefix is all U+10FFFF). Skips the surrogates, which no text holds."""
    stem = prefix.rstrip("\U0010ffff")
    if not stem:
        return None
    after = ord(stem[-1]) + 1
    return stem[:-1] + chr(0xE000 if 0xD800 <= after <= 0xDFFF else after)


def _where(clauses: Any, cols: dict[str, Column], now: float) -> tuple[list[str], list[Any]]:
    if not isinstance(clauses, list):
        raise FieldError("where", "must be a list of {field, op, value}")
    sql: list[str] = []
    params: list[Any] = []
    for i, clause in enumerate(clauses):
        path = f"where[{i}]"
        if not isinstance(clause, dict):
            raise FieldError(path, "must be an object {field, op, value}")
        for key in clause:
            if key not in ("field", "op", "value"):
                raise FieldError(f"{path}.{key}", "is not part of a where clause")
        name = clause.get("field")
        col = cols.get(name) if isinstance(name, str) else None
        if col is None or col.type == "conns":
            raise FieldError(f"{path}.field", f"unknown or unfilterable field {name!r}")
        name = col.name
        op = clause.get("op", "=")
        if op not in OPS:
            raise FieldError(f"{path}.op", f"unknown operator {op!r}; one of {', '.join(OPS)}")
        if "value" not in clause:
            raise FieldError(f"{path}.value", "is required")
        value = clause["value"]
        vpath = f"{path}.value"
        if op == "in":
            if col.type != "addr":
                raise FieldError(
                    f"{path}.op", f"'in' (CIDR match) needs an address field, not {name}"
                )
            try:
                low, high = cidr_range(value) if isinstance(value, str) else ("", "")
            except ValueError:
                low = ""
            if not low:
                raise FieldError(vpath, "must be a CIDR, e.g. 198.18.10.0/24")
            sql.append(f"{q(name)} BETWEEN ? AND ?")
            params += [low, high]
        elif op in ("prefix", "contains"):
            if col.type not in ("str", "id", "enum"):
                raise FieldError(f"{path}.op", f"'{op}' needs a text field, not {name}")
            if not isinstance(value, str) or not valid_text(value):
                raise FieldError(vpath, "must be a string (of valid Unicode)")
            end = _prefix_end(value) if value else None
            if value and op == "prefix" and end is None:
                sql.append(f"{q(name)} >= ?")
                params.append(value)
            elif value and op == "prefix":  # a range, not LIKE: no wildcards to escape
                sql.append(f"{q(name)} >= ? AND {q(name)} < ?")
                params += [value, end]
            elif value:  # instr, not LIKE: the text is matched as it is, case and all
                sql.append(f"instr({q(name)}, ?) > 0")
                params.append(value)
        else:
            if col.type == "addr" and op not in ("=", "!="):
                raise FieldError(f"{path}.op", "addresses take =, != or in (CIDR)")
            sql.append(f"{q(name)} {COMPARE[op]} ?")
            params.append(_value(col, value, vpath, now))
    return sql, params


@dataclass(frozen=True)
class Query:
    kind: Kind
    items: list[Item]
    where: list[str]
    params: list[Any]
    group_by: list[str]
    order: list[str]
    limit: int
    offset: int
    snapshot: int | None  # highest row id to read; None: take it on the first page
    now: float
    digest: str
    since: float | None  # kept apart from `where`: the store picks how to use it

    def since_count_sql(self) -> tuple[str, list[Any]]:
        """How many rows are newer than `since` (an index-only count): lets the store
        choose between the time index (a narrow range) and a scan (a wide one)."""
        t = self.kind.table
        return f"SELECT COUNT(*) FROM {q(t)} WHERE {q(self.kind.time)} >= ?", [self.since]

    def sql(self, snapshot: int, by_time: bool = False) -> tuple[str, list[Any]]:
        """The statement for one page (it asks for one row more, to know if there is a next).
        `by_time`: read through the time index; else scan by row id. (A unary + keeps
        SQLite from using an index for a term: without range statistics it would take the
        time index even for a range that covers most of the table, which is slower.)"""
        where, params = list(self.where), list(self.params)
        if self.since is not None:
            where.append(("" if by_time else "+") + f"{q(self.kind.time)} >= ?")
            params.append(self.since)
        where.append(("+" if by_time else "") + "rowid <= ?")
        text = (
            f"SELECT {', '.join(i.sql for i in self.items)} FROM {q(self.kind.table)}"
            f" WHERE {' AND '.join(where)}"
        )
        if self.group_by:
            text += " GROUP BY " + ", ".join(self.group_by)
        text += " ORDER BY " + ", ".join(self.order) + " LIMIT ? OFFSET ?"
        return text, [*params, snapshot, self.limit + 1, self.offset]

    def page(self, rows: list[tuple[Any, ...]], snapshot: int) -> dict[str, Any]:
        items = []
        for row in rows[: self.limit]:
            out = {}
            for item, value in zip(self.items, row, strict=True):
                out[item.label] = item.convert(value) if item.convert else value
            items.append(out)
        nxt = None
        if len(rows) > self.limit:
            state = {"o": self.offset + self.limit, "s": snapshot, "n": self.now, "h": self.digest}
            nxt = base64.urlsafe_b64encode(json.dumps(state).encode()).decode()
        return {"items": items, "next": nxt}


def _cursor(text: Any, digest: str) -> tuple[int, int, float]:
    if not isinstance(text, str):
        raise FieldError("cursor", "must be the `next` of the previous page")
    try:
        state = json.loads(base64.urlsafe_b64decode(text.encode()))
        offset, snapshot, now, h = state["o"], state["s"], state["n"], state["h"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise FieldError("cursor", "is not a cursor this server returned") from None
    if h != digest:
        raise FieldError("cursor", "belongs to another query (resend the same query)")
    if not (
        isinstance(offset, int)
        and isinstance(snapshot, int)
        and isinstance(now, float)
        and offset >= 0
        and snapshot >= 0
    ):
        raise FieldError("cursor", "is not a cursor this server returned")
    return offset, snapshot, now


def parse(body: Any, now: float, vrfs: Collection[str] | None = None) -> Query:
    """Validate a query body; raises FieldError naming the bad part. `vrfs`: only rows of
    these routing instances (a project's view, access.py), on a table with a `vrf`."""
    if not isinstance(body, dict):
        raise FieldError("body", "the query must be a JSON object")
    for key in body:
        if key not in _KEYS:
            raise FieldError(key, f"is not a query field; fields: {', '.join(sorted(_KEYS))}")
    table = body.get("table")
    kind = TABLES.get(table) if isinstance(table, str) else None  # a list is no dict key
    if kind is None:
        raise FieldError("table", f"must be one of {', '.join(TABLES)}")
    cols = columns(kind)
    digest = hashlib.sha256(
        json.dumps(
            {k: v for k, v in body.items() if k not in ("cursor", "limit")}, sort_keys=True
        ).encode()
    ).hexdigest()[:16]
    offset, snapshot = 0, None
    if body.get("cursor") is not None:
        offset, snapshot, now = _cursor(body["cursor"], digest)

    limit = body.get("limit", DEFAULT_LIMIT)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise FieldError("limit", f"must be an integer between 1 and {MAX_LIMIT}")

    group_by = body.get("group_by", [])
    if not isinstance(group_by, list):
        raise FieldError("group_by", "must be a list of field names or time buckets")
    keys: dict[str, str] = {}  # label -> SQL
    for i, name in enumerate(group_by):
        path = f"group_by[{i}]"
        key = _bucket(name, path, cols) if isinstance(name, str) else None
        if key is None:
            if not isinstance(name, str) or name not in cols or cols[name].type == "conns":
                raise FieldError(path, f"unknown or ungroupable field {name!r}")
            key = Item(name, q(name), False, None)
        keys[key.label] = key.sql

    select = body.get("select")
    if select is None:
        select = [*keys, "count()"] if keys else list(cols)
    if not isinstance(select, list) or not select:
        raise FieldError("select", "must be a non-empty list of fields and aggregates")
    items = [_item(s, f"select[{i}]", cols) for i, s in enumerate(select)]
    grouped = bool(keys) or any(i.aggregate for i in items)
    if grouped:
        for i, item in enumerate(items):
            if not item.aggregate and item.label not in keys:
                raise FieldError(f"select[{i}]", f"{item.label} must be in group_by or aggregated")

    where, params = _where(body.get("where", []), cols, now)
    if vrfs is not None:
        if "vrf" not in cols:
            raise FieldError("table", f"{table} has no vrf: it is not a project's")
        # Sorted: the same view gives the same statement.
        where.append(f"{q('vrf')} IN ({', '.join('?' * len(vrfs))})" if vrfs else "0 = 1")
        params += sorted(vrfs)
    tcol = kind.time
    since = None if body.get("since") is None else parse_time(body["since"], "since", now)
    if body.get("until") is not None:
        # A flow counts in a range when it overlaps it: ended after `since`, began before `until`.
        where.append(f"{q('start' if kind.name == 'flow' else tcol)} <= ?")
        params.append(parse_time(body["until"], "until", now))

    order: list[str] = []
    sort = body.get("sort", [])
    if not isinstance(sort, list):
        raise FieldError("sort", "must be a list of {field, order}")
    by_label = {i.label: i for i in items}
    for i, entry in enumerate(sort):
        path = f"sort[{i}]"
        if isinstance(entry, str):
            entry = {"field": entry}
        if not isinstance(entry, dict) or "field" not in entry:
            raise FieldError(path, "must be a field name or {field, order}")
        name, direction = entry["field"], entry.get("order", "asc")
        if direction not in ("asc", "desc"):
            raise FieldError(f"{path}.order", "must be asc or desc")
        if isinstance(name, str) and name.replace(" ", "") in by_label:
            expr = by_label[name.replace(" ", "")].sql
        elif not grouped and isinstance(name, str) and name in cols and cols[name].type != "conns":
            expr = q(name)
        else:
            raise FieldError(
                f"{path}.field", f"{name!r} is not sortable here; sort by a selected field"
            )
        order.append(f"{expr} {direction.upper()}")
    # A total order, so that offsets page through the same sequence every time.
    order += list(keys.values()) if grouped else ["rowid"]
    if grouped and not keys:
        order = ["1"]  # a single row
    return Query(
        kind,
        items,
        where,
        params,
        list(keys.values()),
        order,
        limit,
        offset,
        snapshot,
        now,
        digest,
        since,
    )
