"""YAML for config files, bounded: aliases may not expand a small file into a huge one.

PyYAML builds an alias as a shared reference, so a 500-byte file of aliases of aliases
("billion laughs") loads quickly but stands for 10^9 values: anything that walks it
(``str()``, validation, a dump) never finishes. :func:`safe_load_bounded` counts the values
the document stands for, every alias expanded, before building it, and refuses more than
:data:`MAX_NODES`. Anchors and merge keys (``<<: *defaults``) in ordinary files still work.
"""

from __future__ import annotations

from typing import IO, Any

import yaml

__all__ = ["MAX_NODES", "YAMLTooLarge", "safe_load_bounded"]

#: Values (scalars, lists, mappings) a config may stand for once aliases are expanded.
#: A catalog of thousands of deployments stays far below it.
MAX_NODES = 1_000_000


class YAMLTooLarge(yaml.YAMLError):
    """The document expands (through aliases) to more than :data:`MAX_NODES` values."""


class _BoundedLoader(yaml.SafeLoader):
    def construct_document(self, node: yaml.Node) -> Any:
        _check_size(node)
        return super().construct_document(node)


def _check_size(root: yaml.Node) -> None:
    """Raise :class:`YAMLTooLarge` when ``root`` expands to more than MAX_NODES nodes.
    Each distinct node is sized once (aliases share nodes), so this is linear in the file."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()  # being sized: meeting one again is a cycle
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        children = _children(node)
        if children_done or not children:
            total = 1 + sum(sizes[id(child)] for child in children)
            if total > MAX_NODES:
                raise YAMLTooLarge(f"the document expands to more than {MAX_NODES:,} "
                                   "values through aliases (an alias bomb?)")
            sizes[id(node)] = total
            open_nodes.discard(id(node))
            continue
        if id(node) in open_nodes:
            raise YAMLTooLarge("a value contains itself through an alias")
        open_nodes.add(id(node))
        stack.append((node, True))
        stack.extend((child, False) for child in children if id(child) not in sizes)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def safe_load_bounded(stream: str | IO[str]) -> Any:
    """``yaml.safe_load`` that refuses a document expanding past :data:`MAX_NODES`.

    Raises:
        yaml.YAMLError: not valid YAML, or :class:`YAMLTooLarge`.
    """
    loader = _BoundedLoader(stream)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()
