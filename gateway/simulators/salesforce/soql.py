"""The slice of SOQL the gate writes: SELECT fields FROM object [WHERE c AND c ...] [ORDER BY f] [LIMIT n],
with conditions `F IN ('a', ...)`, `F = value`, `F >= dateTime` and friends; values are quoted strings,
true/false/null or unquoted dateTime literals. Anything else is MALFORMED_QUERY, as Salesforce says."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

TOKEN = re.compile(r"\s*(?:(?P<str>'(?:[^'\\]|\\.)*')|(?P<op>>=|<=|!=|=|<|>)|(?P<punct>[(),])"
                   r"|(?P<word>[A-Za-z_][\w.]*|[0-9][\w:.+\-]*))")


class SoqlError(ValueError):
    pass


@dataclass(frozen=True)
class Condition:
    field: str
    op: str  # =, !=, <, <=, >, >=, IN
    value: Any  # a list for IN


@dataclass(frozen=True)
class Query:
    fields: tuple[str, ...]
    sobject: str
    conditions: tuple[Condition, ...]
    order_by: str | None
    limit: int | None


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    text = text.strip()
    while pos < len(text):
        match = TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise SoqlError(f"unexpected token at: {text[pos:pos + 20]!r}")
        kind = match.lastgroup
        tokens.append((kind, match.group(kind)))
        pos = match.end()
    return tokens


def _value(kind: str, raw: str) -> Any:
    if kind == "str":
        return re.sub(r"\\(.)", r"\1", raw[1:-1])
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "null":
        return None
    if kind == "word":
        return raw  # a number or a dateTime literal, compared as text (ISO sorts)
    raise SoqlError(f"unexpected value {raw!r}")


def parse(text: str) -> Query:
    tokens = _tokens(text)
    pos = 0

    def take(expected: str | None = None) -> tuple[str, str]:
        nonlocal pos
        if pos >= len(tokens):
            raise SoqlError("unexpected end of query")
        token = tokens[pos]
        if expected is not None and token[1].upper() != expected:
            raise SoqlError(f"expecting {expected}, found {token[1]!r}")
        pos += 1
        return token

    def peek() -> str | None:
        return tokens[pos][1].upper() if pos < len(tokens) else None

    take("SELECT")
    fields = [take()[1]]
    while peek() == ",":
        take(",")
        fields.append(take()[1])
    take("FROM")
    sobject = take()[1]
    conditions = []
    if peek() == "WHERE":
        take("WHERE")
        while True:
            field = take()[1]
            if peek() == "IN":
                take("IN")
                take("(")
                values = [_value(*take())]
                while peek() == ",":
                    take(",")
                    values.append(_value(*take()))
                take(")")
                conditions.append(Condition(field, "IN", values))
            else:
                kind, op = take()
                if kind != "op":
                    raise SoqlError(f"expecting an operator, found {op!r}")
                conditions.append(Condition(field, op, _value(*take())))
            if peek() != "AND":
                break
            take("AND")
    order_by = None
    if peek() == "ORDER":
        take("ORDER")
        take("BY")
        order_by = take()[1]
    limit = None
    if peek() == "LIMIT":
        take("LIMIT")
        limit = int(take()[1])
    if pos != len(tokens):
        raise SoqlError(f"unexpected token {tokens[pos][1]!r}")
    return Query(tuple(fields), sobject, tuple(conditions), order_by, limit)


def _comparable(field: str, value: Any) -> Any:
    if isinstance(value, str) and field.lower() in ("id", "whoid", "ownerid"):
        return value[:15]  # 15- and 18-character ids name the same record
    if isinstance(value, str) and field.lower().endswith("date"):
        return value[:19]  # 2026-11-27T04:00:00Z and 2026-11-27T04:00:00.000+0000 alike, all in UTC
    if isinstance(value, str):
        return value.lower()  # SOQL compares text case-insensitively
    return value


def matcher(conditions: tuple[Condition, ...]):
    """A test of one record against every condition (each IN list turned into a set once, not per record)."""
    prepared = [(c.field, c.op, {_comparable(c.field, v) for v in c.value} if c.op == "IN"
                 else _comparable(c.field, c.value)) for c in conditions]

    def test(record: dict) -> bool:
        for field, op, expected in prepared:
            actual = _comparable(field, record.get(field))
            if op == "IN":
                if actual not in expected:
                    return False
            elif op == "=":
                if actual != expected:
                    return False
            elif op == "!=":
                if actual == expected:
                    return False
            elif actual is None or not {"<": actual < expected, "<=": actual <= expected,
                                         ">": actual > expected, ">=": actual >= expected}[op]:
                return False
        return True

    return test
