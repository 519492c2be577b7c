"""Schema validation of one rules file that reports every mistake, and keeps going.

A part that does not validate (a key, a value, a whole rule) is reported with its file,
line and path, then left out and the rest validated again, so that what remains can still
be cross-checked (an unknown queue in another rule is reported in the same run as a typo'd
key). The result is only ever used to find more problems: a file with any problem is never
compiled into rules that run.
"""

from __future__ import annotations

import copy
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from dispatcher.triage.names import closest

Model = TypeVar("Model", bound=BaseModel)
ROUNDS = 25
Loc = tuple[int | str, ...]


@dataclass
class Source:
    """One file's text, for error lines."""

    path: Path
    text: str
    prefix: str  # "triage." in the settings file, "" in an included file
    lines: list[str] = field(init=False)
    kept: tuple[Any, dict[int, int]] | None = None
    """What validated, with each table's index in the file (set by `validate`)."""

    def __post_init__(self) -> None:
        self.lines = self.text.splitlines()

    def original(self, loc: Loc) -> Loc:
        """`loc` in the validated model as it was in the file (items left out before it)."""
        return loc if self.kept is None else _original(self.kept[0], loc, self.kept[1])

    def line_of(self, loc: Loc) -> int:
        """The line of the innermost key of `loc` found in order, e.g. ("rules", 2, "when")."""
        line = 0
        for index, part in enumerate(loc):
            if isinstance(part, int) and index > 0:
                table = re.escape(self.prefix + str(loc[index - 1]))
                header = re.compile(rf"^\s*\[\[\s*{table}\s*\]\]")
                hits = [n for n, text in enumerate(self.lines) if header.match(text)]
                if part < len(hits):
                    line = hits[part]
            elif isinstance(part, str):
                name = re.escape(part)
                key = re.compile(rf"^\s*(\[+[^\]]*\b)?{name}\b|[{{,]\s*{name}\s*=")
                found = next(
                    (n for n in range(line, len(self.lines)) if key.search(self.lines[n])), None
                )
                line = found if found is not None else line
        return line + 1

    def problem(self, loc: Loc, message: str, line: int | None = None) -> str:
        where = ".".join(str(part) for part in loc)
        shown = f"{self.prefix}{where}" if where else self.prefix.rstrip(".")
        return f"{self.path}:{line or self.line_of(loc)}: {shown}: {message}"


def validate(model: type[Model], data: Any, source: Source) -> tuple[Model | None, list[str]]:
    """The model from what in `data` is valid, and a problem line for everything that is not."""
    data = copy.deepcopy(data)
    origin = _origins(data)
    problems: list[str] = []
    reported: set[Loc] = set()
    dropped: set[Loc] = set()
    for _ in range(ROUNDS):
        try:
            validated = model.model_validate(data)
        except ValidationError as error:
            found = [_Error.of(data, item) for item in error.errors(include_url=False)]
            earlier = set(dropped)
            drops = []
            for loc, errors in _by_place(found, data).items():
                original = _original(data, loc, origin)
                missing = errors[0].kind == "missing"
                drops.append(loc[:-1] if missing else loc)
                dropped.add(original[:-1] if missing else original)
                if original in reported or _caused(original, errors, earlier):
                    continue  # what our own leaving out caused
                reported.add(original)
                line = source.line_of(original[:-1] if missing else original)
                problems.append(source.problem(original, _message(model, errors), line))
            if not _drop(data, drops):
                return None, problems
        else:
            source.kept = (data, origin)
            return validated, problems
    return None, problems


def _caused(loc: Loc, errors: list[_Error], earlier: set[Loc]) -> bool:
    """An error that only follows from leaving something out: a table left empty, a key
    now missing, a union that no longer fits, beside or just above what was left out."""
    near = any(old[:-1] == loc or old[:-1] == loc[:-1] for old in earlier)
    error = errors[0]
    return near and (
        error.kind == "missing" or error.union is not None or "empty condition" in error.message
    )


@dataclass(frozen=True)
class _Error:
    """One pydantic error, placed in the data; `union` is where it went into a union
    member and `member` which one (pydantic names the member in the path), if it did."""

    loc: Loc
    raw: Loc
    kind: str
    message: str
    union: Loc | None
    member: str | None

    @classmethod
    def of(cls, data: Any, item: Any) -> _Error:
        raw, kind = tuple(item["loc"]), str(item["type"])
        found: list[int | str] = []
        union, member = None, None
        node = data
        for index, part in enumerate(raw):
            if _holds(node, part):
                node = node[part]
            elif not (kind == "missing" and index == len(raw) - 1):
                if union is None:
                    union, member = tuple(found), str(part)
                continue
            found.append(part)
        return cls(tuple(found), raw, kind, str(item["msg"]), union, member)


def _by_place(errors: list[_Error], data: Any) -> dict[Loc, list[_Error]]:
    """Errors grouped by place. Where a table did not fit a union (`keywords = { words =
    [...], stem = "xx" }`), only the errors of the table members it fits best are told, not
    what every other member expected."""
    members: dict[Loc, dict[str, list[_Error]]] = {}
    for error in errors:
        table = error.union is not None and isinstance(_at(data, error.union), dict)
        if table and error.member and error.member[:1].isupper():
            assert error.union is not None
            members.setdefault(error.union, {}).setdefault(error.member, []).append(error)
    best: dict[Loc, list[_Error]] = {}
    for union, found in members.items():
        fewest = min(len(group) for group in found.values())
        chosen = [e for group in found.values() if len(group) == fewest for e in group]
        if any(e.kind == "extra_forbidden" for e in chosen):
            chosen = [e for e in chosen if e.kind == "extra_forbidden"]
        best[union] = chosen
    places: dict[Loc, list[_Error]] = {}
    for error in errors:
        if error.union in best and error not in best[error.union]:
            continue
        places.setdefault(error.loc, []).append(error)
    return places


def _at(data: Any, loc: Loc) -> Any:
    for part in loc:
        data = data[part]
    return data


def _origins(data: Any) -> dict[int, int]:
    """The index each table in an array had in the file, by identity, so that lines and
    paths stay true after earlier items were left out."""
    found: dict[int, int] = {}
    stack = [data]
    while stack:
        node = stack.pop()
        children = node.values() if isinstance(node, dict) else node
        if isinstance(node, list):
            found.update((id(item), n) for n, item in enumerate(node) if isinstance(item, dict))
        stack.extend(child for child in children if isinstance(child, dict | list))
    return found


def _original(data: Any, loc: Loc, origin: dict[int, int]) -> Loc:
    shown: list[int | str] = []
    node = data
    for part in loc:
        try:
            child = node[part]
        except (KeyError, IndexError, TypeError):
            shown.append(part)  # a missing key
            break
        shown.append(origin.get(id(child), part) if isinstance(part, int) else part)
        node = child
    return tuple(shown)


def _drop(data: Any, locs: list[Loc]) -> bool:
    """Take out what each loc names (items of arrays last, from the end); False if none."""
    dropped = False
    for loc in sorted({loc for loc in locs if loc}, key=_sort_key, reverse=True):
        node = data
        try:
            for part in loc[:-1]:
                node = node[part]
        except (KeyError, IndexError, TypeError):
            continue  # inside something already taken out
        if _holds(node, loc[-1]):
            del node[loc[-1]]
            dropped = True
    return dropped


def _holds(node: Any, part: int | str) -> bool:
    if isinstance(node, dict):
        return part in node
    return isinstance(node, list) and isinstance(part, int) and part < len(node)


def _sort_key(loc: Loc) -> tuple[tuple[int, int | str], ...]:
    return tuple((0, part) if isinstance(part, int) else (1, part) for part in loc)


def _message(model: type[BaseModel], errors: list[_Error]) -> str:
    extra = [error for error in errors if error.kind == "extra_forbidden"]
    if not extra:
        return " or ".join(dict.fromkeys(error.message for error in errors))
    key = str(extra[0].loc[-1])
    keys = sorted({k for error in extra for k in _keys_at(model, error.raw[:-1])})
    suggestion = closest(key, keys)
    hint = f"; did you mean {suggestion!r}?" if suggestion else ""
    return f"unknown key {key!r}{hint} (valid: {', '.join(keys)})"


def _keys_at(model: type[BaseModel], loc: Loc) -> list[str]:
    """The keys the table at `loc` may have."""
    current: list[type[BaseModel]] = [model]
    for part in loc:
        if isinstance(part, int):
            continue
        named = [candidate for candidate in current if candidate.__name__ == part]
        if named:  # pydantic names the union member it tried
            current = named
            continue
        below = [
            inner
            for candidate in current
            for name, info in candidate.model_fields.items()
            if part in (name, info.alias)
            for inner in _models_in(info.annotation)
        ]
        current = below or current  # a dict key (a calendar's name): the same model
    return sorted({info.alias or name for name, info in current[0].model_fields.items()})


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    args = typing.get_args(annotation)
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) in (
        typing.Union,
        list,
        dict,
    ):
        return [model for arg in args for model in _models_in(arg)]
    return []
