"""The settings file as text: the generated example and line-precise checking.

This module owns `config/strongroom.example.toml` (`render_example()` walks the pydantic models in
`appliance.settings` and writes every setting, commented, with its docstring) and `check()`, which
validates a file and reports problems at the TOML line and column they come from. It must not
define settings (that is `appliance.settings`), read the environment into the result, or print:
the CLI formats what it returns.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import json
import re
import tomllib
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from appliance import settings as settings_module
from appliance.errors import ConfigError

Location = tuple[str | int, ...]

HEADER = """\
# Strongroom settings.
#
# The daemon and the CLI read /etc/strongroom/strongroom.toml, or the file named by --config or
# $STRONGROOM_CONFIG. Every setting is listed below, commented out, with its default or an example
# value: uncomment what you change. Any setting can also come from the environment as
# STRONGROOM_<NAME>, nested with "__" (e.g. STRONGROOM_XERO__API_URL), which wins over this file.
# Secrets are never values here: name a file (mode 0600) or a systemd credential (LoadCredential=).
#
# Check a file with `strongroom config check FILE`. This text is generated from the settings models
# by `strongroom config example`; the copy in the source tree (config/) must not be edited by hand.
"""


# --- rendering the example -------------------------------------------------------------------


def render_example(*, commented: bool = True, model: type[BaseModel] | None = None) -> str:
    """The example settings file: every setting with its docstring, default or example value.

    With `commented=False` the settings and table headers are live TOML (used by the tests to
    prove the example is valid settings). `model` defaults to `Settings`.
    """
    lines = HEADER.splitlines()
    _render_model(model or settings_module.Settings, (), lines, "#" if commented else "")
    return "\n".join(lines).rstrip("\n") + "\n"


def _render_model(model: type[BaseModel], path: tuple[str, ...], lines: list[str], mark: str) -> None:
    tables: list[tuple[str, FieldInfo]] = []
    for name, field in model.model_fields.items():
        if _table_kind(field.annotation) is None:
            _render_scalar(name, field, lines, mark)
        else:
            tables.append((name, field))
    # TOML requires a table's plain keys before its sub-tables.
    for name, field in tables:
        kind, submodel = _table_kind(field.annotation) or ("table", BaseModel)
        doc = field.description or _class_doc(submodel)
        lines.append("")
        lines.extend(_comment(doc))
        if kind == "table":
            lines.append(f"{mark}[{_dotted((*path, name))}]")
            _render_model(submodel, (*path, name), lines, mark)
        elif kind == "array":
            lines.append(f"{mark}[[{_dotted((*path, name))}]]")
            _render_model(submodel, (*path, name), lines, mark)
        else:  # a map of named tables, e.g. [regions.au]
            key = _example_key(field)
            lines.append(f"{mark}[{_dotted((*path, name, key))}]")
            _render_model(submodel, (*path, name, key), lines, mark)


def _render_scalar(name: str, field: FieldInfo, lines: list[str], mark: str) -> None:
    if not lines[-1].lstrip("#").startswith("["):
        lines.append("")
    lines.extend(_comment(field.description))
    default = field.default
    adapter: TypeAdapter[Any] = TypeAdapter(field.annotation if field.annotation is not None else Any)
    if field.examples:
        value = adapter.dump_python(adapter.validate_python(field.examples[0]), mode="json")
        if field.is_required():
            lines.append("# Required.")
        elif default is not PydanticUndefined and default is not None:
            lines.append(f"# Default: {_toml_value(adapter.dump_python(default, mode='json'))}")
    elif default is not PydanticUndefined and default is not None:
        value = adapter.dump_python(default, mode="json")
    elif field.default_factory is not None:
        value = adapter.dump_python(field.default_factory(), mode="json")  # type: ignore[call-arg]
    else:
        if field.is_required():
            lines.append("# Required.")
        value = _placeholder(field.annotation)
    first, *rest = _toml_value(value).splitlines()
    lines.append(f"{mark}{_key(name)} = {first}")
    lines.extend(f"{mark}{line}" for line in rest)


def _table_kind(annotation: Any) -> tuple[str, type[BaseModel]] | None:
    """('table'|'array'|'map', model) when the field is written as TOML table(s), else None."""
    annotation = _strip_optional(annotation)
    if _is_model(annotation):
        return "table", annotation
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is list and args and _is_model(args[0]):
        return "array", args[0]
    if origin is dict and len(args) == 2 and _is_model(args[1]):
        return "map", args[1]
    return None


def _strip_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(members) == 1:
            return members[0]
    return annotation


def _is_model(annotation: Any) -> bool:
    return inspect.isclass(annotation) and issubclass(annotation, BaseModel)


def _class_doc(model: type[BaseModel]) -> str | None:
    doc = model.__dict__.get("__doc__")
    return inspect.cleandoc(doc) if doc else None


def _example_key(field: FieldInfo) -> str:
    if field.examples and isinstance(field.examples[0], dict) and field.examples[0]:
        return str(next(iter(field.examples[0])))
    return "name"


def _comment(text: str | None) -> list[str]:
    if not text:
        return []
    return [f"# {line}".rstrip() for line in text.splitlines()]


def _placeholder(annotation: Any) -> Any:
    inner = _strip_optional(annotation)
    if typing.get_origin(inner) is typing.Literal:
        return typing.get_args(inner)[0]
    placeholders: dict[Any, Any] = {int: 0, float: 0.0, bool: False}
    if typing.get_origin(inner) in (list, set, tuple):
        return []
    if typing.get_origin(inner) is dict:
        return {}
    return placeholders.get(inner, "")


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(name: str) -> str:
    return name if _BARE_KEY.match(name) else json.dumps(name)


def _dotted(path: tuple[str, ...]) -> str:
    return ".".join(_key(part) for part in path)


def _toml_value(value: Any) -> str:
    """A JSON-mode value as TOML (JSON strings are valid TOML basic strings)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        items = [_toml_value(item) for item in value]
        inline = "[" + ", ".join(items) + "]"
        if len(inline) <= 80 or any("\n" in item for item in items):
            return inline
        return "[\n" + "".join(f"    {item},\n" for item in items) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(str(k))} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if value is None:
        return '""'
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


# --- checking a file -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Problem:
    """One problem in a settings file; `line` and `column` count from 1."""

    line: int
    column: int
    message: str
    key: str = ""
    """The setting's dotted name (`apps[0].client_id`); empty for syntax errors."""


class _FileOnlySettings(settings_module.Settings):
    """The settings model fed from the file alone: `check` must not depend on the environment."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


_DECODE_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)")


def check(path: Path) -> list[Problem]:
    """Validate the settings file at `path`; an empty list means it is valid."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read settings file {path}: {error}") from error
    return check_text(text)


def check_text(text: str) -> list[Problem]:
    """Validate settings given as TOML text; problems sorted by position."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        message = str(error)
        # Python 3.11's tomllib puts the position only in the message: "Invalid value (at line 2, column 5)".
        match = _DECODE_POSITION.search(message)
        if match:
            line, column = int(match.group(1)), int(match.group(2))
        else:  # "(at end of document)"
            line, column = max(1, len(text.splitlines())), 1
        return [Problem(line, column, _DECODE_POSITION.sub("", message).replace("(at end of document)", "").strip())]
    try:
        _FileOnlySettings.model_validate(data)
    except ValidationError as error:
        positions = index_keys(text)
        problems = [_problem(entry, positions) for entry in error.errors()]
        return sorted(problems, key=lambda p: (p.line, p.column))
    return []


def _problem(entry: Any, positions: dict[Location, Position]) -> Problem:
    location: Location = tuple(entry["loc"])
    key = _format_location(location)
    # A missing key has no position of its own: point at the nearest enclosing table that exists.
    # A bad value is pointed at where the value starts; an unknown key at the key.
    line, column = 1, 1
    for end in range(len(location), 0, -1):
        if location[:end] in positions:
            found = positions[location[:end]]
            exact = end == len(location) and entry["type"] not in ("extra_forbidden", "missing")
            line, column = found.line, found.value_column if exact else found.column
            break
    if entry["type"] == "extra_forbidden":
        message = f"unknown setting `{key}`"
        known = _field_names(location[:-1])
        suggestion = difflib.get_close_matches(str(location[-1]), known, n=1) if known else []
        if suggestion:
            message += f" (did you mean `{suggestion[0]}`?)"
    elif entry["type"] == "missing":
        message = f"`{key}` is required"
    else:
        message = f"`{key}`: {entry['msg']}"
    return Problem(line, column, message, key)


def _format_location(location: Location) -> str:
    text = ""
    for part in location:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text


def _field_names(location: Location) -> list[str]:
    """The setting names allowed in the table at `location`, or [] when it cannot be told."""
    annotation: Any = settings_module.Settings
    for part in location:
        annotation = _strip_optional(annotation)
        origin, args = typing.get_origin(annotation), typing.get_args(annotation)
        if isinstance(part, int) and origin is list and args:
            annotation = args[0]
        elif origin is dict and len(args) == 2:
            annotation = args[1]
        elif _is_model(annotation) and isinstance(part, str) and part in annotation.model_fields:
            annotation = annotation.model_fields[part].annotation
        else:
            return []
    annotation = _strip_optional(annotation)
    return list(annotation.model_fields) if _is_model(annotation) else []


# --- where each key is in the text -----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Position:
    """Where a key (or table header) is, and where its value starts; counting from 1."""

    line: int
    column: int
    value_column: int


def index_keys(text: str) -> dict[Location, Position]:
    """Map each table and key of a (valid) TOML document to its position.

    Locations use pydantic's shape: names for keys and tables, indexes for arrays of tables, so
    `[[apps]]`'s second `client_id` is ('apps', 1, 'client_id').
    """
    positions: dict[Location, Position] = {}
    arrays: dict[Location, int] = {}
    table: Location = ()
    scanner = _ValueScanner()
    for number, line in enumerate(text.splitlines(), start=1):
        if scanner.open:
            scanner.feed(line)
            continue
        stripped = line.lstrip()
        column = len(line) - len(stripped) + 1
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("["):
            is_array = stripped.startswith("[[")
            parsed = _parse_key(stripped, 2 if is_array else 1)
            if parsed is None:
                continue
            parts, _ = parsed
            resolved = _resolve(parts, arrays)
            here = Position(number, column, column)
            if is_array:
                arrays[resolved] = arrays.get(resolved, -1) + 1
                positions.setdefault(resolved, here)
                resolved = (*resolved, arrays[resolved])
            table = resolved
            positions.setdefault(table, here)
            continue
        parsed = _parse_key(line, 0)
        if parsed is None:
            continue
        parts, rest = parsed
        value = line[rest:]
        value_column = rest + len(value) - len(value.lstrip()) + 1
        for end in range(1, len(parts) + 1):
            positions.setdefault((*table, *parts[:end]), Position(number, column, value_column))
        scanner.feed(value)
    return positions


def _resolve(parts: list[str], arrays: dict[Location, int]) -> Location:
    """A header's dotted name with the current index inserted after each array of tables."""
    resolved: Location = ()
    for index, part in enumerate(parts):
        resolved = (*resolved, part)
        if resolved in arrays and index < len(parts) - 1:
            resolved = (*resolved, arrays[resolved])
    return resolved


def _parse_key(line: str, start: int) -> tuple[list[str], int] | None:
    """Dotted key at `line[start:]`: (parts, offset just after the `=` or closing bracket)."""
    parts: list[str] = []
    position = start
    while True:
        while position < len(line) and line[position] in " \t":
            position += 1
        if position >= len(line):
            return None
        char = line[position]
        if char in "\"'":
            end = position + 1
            while end < len(line) and line[end] != char:
                end += 2 if char == '"' and line[end] == "\\" else 1
            if end >= len(line):
                return None
            raw = line[position : end + 1]
            parts.append(json.loads(raw) if char == '"' else raw[1:-1])
            position = end + 1
        else:
            match = re.compile(r"[A-Za-z0-9_-]+").match(line, position)
            if not match:
                return None
            parts.append(match.group())
            position = match.end()
        while position < len(line) and line[position] in " \t":
            position += 1
        if position < len(line) and line[position] == ".":
            position += 1
            continue
        if position < len(line) and line[position] in "=]":
            return parts, position + 1
        return None


class _ValueScanner:
    """Follows values across lines (arrays, inline tables, multi-line strings) so their
    continuation lines are not mistaken for keys."""

    def __init__(self) -> None:
        self.depth = 0
        self.multiline: str | None = None

    @property
    def open(self) -> bool:
        return self.depth > 0 or self.multiline is not None

    def feed(self, text: str) -> None:
        for token in self._tokens(text):
            if token in "[{":
                self.depth += 1
            elif token in "]}":
                self.depth = max(0, self.depth - 1)

    def _tokens(self, text: str) -> Iterator[str]:
        position = 0
        while position < len(text):
            if self.multiline is not None:
                end = text.find(self.multiline, position)
                if end < 0:
                    return
                position = end + 3
                self.multiline = None
                continue
            char = text[position]
            if text.startswith(('"""', "'''"), position):
                self.multiline = text[position : position + 3]
                position += 3
            elif char in "\"'":
                end = position + 1
                while end < len(text) and text[end] != char:
                    end += 2 if char == '"' and text[end] == "\\" else 1
                position = end + 1
            elif char == "#":
                return
            else:
                yield char
                position += 1
