"""Safe YAML loading that keeps line numbers and rejects duplicate keys."""

from __future__ import annotations

from typing import Any

import yaml

from harness.errors import HarnessError


class LineDict(dict):
    """A mapping that remembers the 1-based line of itself and of each key."""

    line: int = 0
    key_lines: dict


class LineList(list):
    """A sequence that remembers the 1-based line of itself and of each item."""

    line: int = 0
    item_lines: list


class _Loader(yaml.SafeLoader):
    """SafeLoader whose mappings and sequences carry line numbers."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> LineDict:
    result = LineDict()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if not isinstance(key, (str, int, float, bool)) or key is None:
            raise HarnessError("mapping keys must be scalars", file=loader.name, line=line)
        if key in result:
            raise HarnessError(f"duplicate key (first at line {result.key_lines[key]})",
                               file=loader.name, line=line, key=str(key))
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = line
    return result


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> LineList:
    result = LineList(loader.construct_object(child, deep=True) for child in node.value)
    result.line = node.start_mark.line + 1
    result.item_lines = [child.start_mark.line + 1 for child in node.value]
    return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def load_yaml(path: str) -> Any:
    """Load one YAML file safely; syntax errors become a HarnessError naming file and line."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise HarnessError(f"cannot read: {exc.strerror}", file=path) from None
    loader = _Loader(text)
    loader.name = path
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise HarnessError(f"YAML syntax error: {exc.problem or exc.context}", file=path, line=line) from None
    except yaml.YAMLError as exc:
        raise HarnessError(f"YAML error: {exc}", file=path) from None
    finally:
        loader.dispose()
