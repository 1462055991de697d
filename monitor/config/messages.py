"""Pydantic's validation errors in our words: one line naming file, line, key path and value."""

from __future__ import annotations

import difflib
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from monitor.config.yaml_lines import KeyPath, YamlDocument
from monitor.errors import ConfigError


def first_problem(error: ValidationError, document: YamlDocument) -> ConfigError:
    """The problem written first in the file, as one line."""
    problems = [_describe(details) for details in error.errors()]
    path, message, line_of = min(problems, key=lambda problem: document.line(problem[2]))
    return document.error(path, message, line_of=line_of)


def _describe(details: ErrorDetails) -> tuple[KeyPath, str, KeyPath]:
    """(key path shown, message, key path whose line is reported) of one pydantic error."""
    path: KeyPath = tuple(details["loc"])
    kind = details["type"]
    context = details.get("ctx", {})
    if kind == "missing":
        return path[:-1], f"missing required key '{path[-1]}'", path[:-1]
    if kind == "unknown_key":
        key, known = str(context["key"]), context["known"]
        noun = "detector" if path and path[-1] == "detectors" else "key"
        close = difflib.get_close_matches(key, known, n=1)
        hint = f", did you mean '{close[0]}'?" if close else ""
        return path, f"unknown {noun} {show(key)}{hint} (known: {', '.join(known)})", (*path, key)
    if kind == "value_error" and isinstance(details["input"], dict):
        # A check in a dataclass's __post_init__ saying "key: what is wrong" points at that
        # key, and does not echo the section (the mqtt section may hold a secret).
        key, _, rest = str(context["error"]).partition(": ")
        if key in details["input"] and rest:
            return (*path, key), rest, (*path, key)
    message = f"{_message(kind, context, details['msg'])}, got {show(details['input'])}"
    value = details["input"]
    if kind == "string_type" and type(value) is int and value >= 60:
        # YAML 1.1 reads an unquoted 6:30 as a base-60 number (390).
        message += f" (YAML reads an unquoted {value // 60}:{value % 60:02d} as {value}: quote it)"
    return path, message, path


_MESSAGES = {
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "dict_type": "must be a mapping",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "too_short": "must not be empty",
}
_BOUNDS = {"le": "<=", "ge": ">=", "lt": "<", "gt": ">"}


def _message(kind: str, context: dict[str, Any], fallback: str) -> str:
    if kind in _MESSAGES:
        return _MESSAGES[kind]
    if kind == "value_error":
        return str(context["error"])
    if kind == "literal_error":  # pydantic's "'peak' or 'rms'"
        choices = context["expected"].replace(" or ", ", ").replace("'", "")
        return f"must be {choices}" if "," not in choices else f"must be one of: {choices}"
    for bound, sign in _BOUNDS.items():
        if bound in context:
            return f"must be {sign} {context[bound]:g}"
    return fallback


def show(value: Any) -> str:
    """A value in YAML's spelling (null, true, .nan, {x: 1}), strings quoted, on one short line."""
    if isinstance(value, str):
        text = repr(value)
    else:
        dumped = yaml.safe_dump(value, default_flow_style=True, width=1_000_000, sort_keys=False)
        text = " ".join(dumped.removesuffix("...\n").split())
    return text if len(text) <= 80 else text[:77] + "..."
