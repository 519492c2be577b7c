"""Knowledge-base articles: Markdown files with a YAML front matter, read and checked.

    ---
    id: printer-offline
    title: The printer says it is offline
    language: en
    audience: public            # or internal: suggested to agents, never shown to customers
    url: https://help.example.com/printer-offline     # required when public
    tags: [printer]
    products: [PrintMax 200]
    keywords: [打印机, プリンター]  # more words customers use, e.g. in other languages
    ---
    The article's text.

A folder is read whole; every problem is reported as `file:line: reason` and a bad article is
left out (the others are used).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

FENCE = "---"
LANGUAGE = re.compile(r"^[a-z]{2}(-[A-Za-z0-9]{2,8})?$")
MAX_BYTES = 1_000_000
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's loader where PyYAML was built with it (ten times faster), else the Python one."""


class FrontMatter(BaseModel):
    """What an article says about itself; unknown keys are mistakes."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    title: str = Field(min_length=1, max_length=300)
    language: str
    audience: Literal["public", "internal"] = "public"
    url: str | None = Field(default=None, max_length=2000)
    tags: list[str] = Field(default_factory=list)
    products: list[str] = Field(default_factory=list)
    keywords: list[str] = Field(default_factory=list)

    @field_validator("language")
    @classmethod
    def _language(cls, value: str) -> str:
        if not LANGUAGE.match(value):
            raise ValueError("a language tag such as en, da, zh or ja")
        return value.split("-")[0]

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://", "/")):
            raise ValueError("a link: https://..., http://... or a path starting with /")
        return value


@dataclass(frozen=True, slots=True)
class Article:
    """One article as the index and the suggestions use it."""

    id: str
    title: str
    language: str
    audience: str
    url: str | None
    tags: tuple[str, ...]
    products: tuple[str, ...]
    keywords: tuple[str, ...]
    body: str
    file: str

    @property
    def public(self) -> bool:
        return self.audience == "public"


class KbError(Exception):
    """The knowledge base cannot be read at all; `problems` holds "file:line: reason" lines."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def read_folder(folder: Path) -> tuple[list[Article], list[str]]:
    """Every `*.md` below the folder, in path order: the good articles and the problems.
    An id used twice keeps its first article; the later ones are problems."""
    if not folder.is_dir():
        raise KbError([f"{folder}: not a folder"])
    articles: list[Article] = []
    problems: list[str] = []
    first: dict[str, str] = {}
    for path in sorted(folder.rglob("*.md")):
        article, found = read_article(path)
        problems.extend(found)
        if article is None:
            continue
        if article.id in first:
            problems.append(f"{path}:2: id {article.id!r} is already used by {first[article.id]}")
            continue
        first[article.id] = str(path)
        articles.append(article)
    return articles, problems


def read_article(path: Path) -> tuple[Article | None, list[str]]:
    """One file: the article, or None and why not."""
    try:
        if path.stat().st_size > MAX_BYTES:
            return None, [f"{path}:1: larger than {MAX_BYTES} bytes"]
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        return None, [f"{path}:1: not UTF-8 ({error.reason})"]
    except OSError as error:
        return None, [f"{path}:1: cannot be read ({error.strerror})"]
    return parse(text, str(path))


def parse(text: str, file: str) -> tuple[Article | None, list[str]]:
    """An article from a file's text; `file` names it in problems."""
    lines = text.lstrip("\ufeff").split("\n")
    if not lines or lines[0].strip() != FENCE:
        return None, [f"{file}:1: no front matter (the file must start with a line ---)"]
    end = next((i for i in range(1, len(lines)) if lines[i].strip() == FENCE), None)
    if end is None:
        return None, [f"{file}:1: the front matter is not closed (a second line ---)"]
    head, body = "\n".join(lines[1:end]), "\n".join(lines[end + 1 :]).strip()
    try:
        node = yaml.compose(head, Loader=LOADER)
        values = yaml.load(head, Loader=LOADER)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 2 if mark is not None else 2
        reason = getattr(error, "problem", None) or str(error)
        return None, [f"{file}:{line}: front matter is not valid YAML: {reason}"]
    if not isinstance(values, dict):
        return None, [f"{file}:2: the front matter must be keys and values (id: ..., title: ...)"]
    lines_of = _key_lines(node)
    try:
        meta = FrontMatter.model_validate(values)
    except ValidationError as error:
        return None, [_problem(file, item, lines_of) for item in error.errors()]
    problems = []
    if meta.audience == "public" and not meta.url:
        problems.append(f"{file}:{lines_of.get('audience', 2)}: a public article needs a url")
    if not body:
        problems.append(f"{file}:{end + 2}: the article has no text")
    if problems:
        return None, problems
    return (
        Article(
            id=meta.id,
            title=meta.title,
            language=meta.language,
            audience=meta.audience,
            url=meta.url,
            tags=tuple(meta.tags),
            products=tuple(meta.products),
            keywords=tuple(meta.keywords),
            body=body,
            file=file,
        ),
        [],
    )


def _key_lines(node: yaml.Node | None) -> dict[str, int]:
    """The file line of each top-level key (the front matter starts on line 2)."""
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {key.value: key.start_mark.line + 2 for key, _ in node.value if hasattr(key, "value")}


def _problem(file: str, item: object, lines_of: dict[str, int]) -> str:
    loc = item["loc"]  # type: ignore[index]
    key = str(loc[0]) if loc else ""
    line = lines_of.get(key, 2)
    where = ".".join(str(part) for part in loc) or "front matter"
    message = str(item["msg"]).removeprefix("Value error, ")  # type: ignore[index]
    if item["type"] == "extra_forbidden":  # type: ignore[index]
        known = ", ".join(FrontMatter.model_fields)
        message = f"unknown key (known: {known})"
    elif item["type"] == "missing":  # type: ignore[index]
        message = "missing"
    return f"{file}:{line}: {where}: {message}"
