"""YAML with line numbers: the plain data of a document plus the line of every key path.

``yaml.safe_load`` forgets where values were written and silently keeps the last of two equal
keys; configuration errors need both. So the document is composed into nodes and walked here:
scalars are built by PyYAML's safe constructor, mappings and sequences by the walk, which
records lines and rejects duplicate keys. Keys are taken as written (``on:`` stays the string
``'on'``, not YAML 1.1's ``True``). Anchors, aliases and ``<<`` merge keys work as in PyYAML.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from monitor.errors import ConfigError

KeyPath = tuple[str | int, ...]

_MERGE_TAG = "tag:yaml.org,2002:merge"


def format_path(path: KeyPath) -> str:
    """``('channels', 0, 'detectors', 'black')`` → ``channels[0].detectors.black``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


@dataclass(frozen=True)
class YamlDocument:
    data: Any
    """The document as dicts, lists and scalars; None for an empty file."""
    lines: Mapping[KeyPath, int]
    """1-based line where each key path is written: the key's line, or a list item's."""
    source: str
    """The file name errors start with."""

    def line(self, path: KeyPath) -> int:
        """Line of ``path``, or of its nearest ancestor written in the file."""
        while path and path not in self.lines:
            path = path[:-1]
        return self.lines.get(path, 1)

    def error(self, path: KeyPath, message: str, *, line_of: KeyPath | None = None) -> ConfigError:
        """``FILE:LINE: KEY.PATH: message``, the line being that of ``line_of`` (or ``path``)."""
        return located(self.source, self.line(path if line_of is None else line_of), path, message)


def located(source: str, line: int, path: KeyPath, message: str) -> ConfigError:
    """The one error format of configuration files: ``FILE:LINE: KEY.PATH: message``."""
    where = f"{format_path(path)}: " if path else ""
    return ConfigError(f"{source}:{line}: {where}{message}")


def load_yaml(text: str, source: str) -> YamlDocument:
    """Parse one YAML document; syntax errors become a one-line ConfigError naming the line."""
    loader = None
    try:
        loader = yaml.SafeLoader(text)  # already checks for unprintable characters
        root = loader.get_single_node()
        if root is None:
            return YamlDocument(None, {(): 1}, source)
        walk = _Walk(loader, source)
        data = walk.value(root, (), root.start_mark.line + 1)
        return YamlDocument(data, walk.lines, source)
    except yaml.YAMLError as error:
        raise _syntax_error(error, text, source) from None
    finally:
        if loader is not None:
            loader.dispose()


class _Walk:
    def __init__(self, loader: yaml.SafeLoader, source: str) -> None:
        self.loader = loader
        self.source = source
        self.lines: dict[KeyPath, int] = {}
        self._open: set[int] = set()  # collections being walked: an alias into one never ends

    def value(self, node: Node, path: KeyPath, line: int) -> Any:
        self.lines[path] = line
        if isinstance(node, ScalarNode):
            return self.loader.construct_object(node, deep=True)
        return self.collection(node, path, line)

    def collection(self, node: Node, path: KeyPath, line: int) -> Any:
        if id(node) in self._open:
            raise self._error(path, line, "an alias refers to a collection that contains it")
        self._open.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                return [
                    self.value(item, (*path, i), item.start_mark.line + 1)
                    for i, item in enumerate(node.value)
                ]
            return self.mapping(node, path)
        finally:
            self._open.discard(id(node))

    def mapping(self, node: Node, path: KeyPath) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        written: dict[str, tuple[Node, int]] = {}
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag == _MERGE_TAG:
                for source in self._merge_sources(value_node, path, line):
                    for key, value in self.collection(source, path, line).items():
                        merged.setdefault(key, value)  # the first merged mapping wins, as in YAML
                continue
            if not isinstance(key_node, ScalarNode):
                raise self._error(path, line, "a key must be a plain name, not a list or mapping")
            key = key_node.value
            if key in first_line:
                raise self._error(
                    (*path, key),
                    line,
                    f"duplicate key '{key}' (first at line {first_line[key]}); "
                    "YAML would silently keep only the last",
                )
            first_line[key] = line
            written[key] = value_node, line
        # Written keys are walked after merged ones so that their lines are the ones kept.
        result = dict(merged)
        for key, (value_node, line) in written.items():
            result[key] = self.value(value_node, (*path, key), line)
        return result

    def _merge_sources(self, node: Node, path: KeyPath, line: int) -> list[Node]:
        sources = node.value if isinstance(node, SequenceNode) else [node]
        if not all(isinstance(source, MappingNode) for source in sources):
            raise self._error(path, line, "'<<' must merge a mapping or a list of mappings")
        return sources

    def _error(self, path: KeyPath, line: int, message: str) -> ConfigError:
        return located(self.source, line, path, message)


def _syntax_error(error: yaml.YAMLError, text: str, source: str) -> ConfigError:
    """PyYAML's multi-line report as ``FILE:LINE: invalid YAML: problem (context)``."""
    mark = getattr(error, "problem_mark", None)
    if isinstance(error, yaml.MarkedYAMLError) and error.problem:
        detail = error.problem
        if error.context:
            context_mark = error.context_mark
            where = ""
            if context_mark is not None and (mark is None or context_mark.line != mark.line):
                where = f" at line {context_mark.line + 1}"
            detail = f"{detail} ({error.context}{where})"
    else:
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
    if mark is not None:
        line = mark.line + 1
    elif isinstance(error, yaml.reader.ReaderError):
        line = text.count("\n", 0, error.position) + 1
        detail = f"unacceptable character #x{error.character:04x}"
    else:
        line = 1
    return located(source, line, (), f"invalid YAML: {' '.join(detail.split())}")
