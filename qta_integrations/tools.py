"""The tool catalogue: `Tool` records and the `ToolCatalog` that validates them.

Every other part of the package speaks in tool ids; this module is the one place that turns
whatever the user has (dicts, JSON/JSONL files, LangChain tools, LlamaIndex tools) into
validated `Tool` records.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

__all__ = ["Tool", "ToolCatalog", "ToolsLike"]


@dataclass(frozen=True)
class Tool:
    """One tool in the catalogue.

    Attributes:
        id: Unique, stable identifier. Used as the vector-store id and in labels.
        name: Human-readable name (for LangChain/LlamaIndex tools, the name the model calls).
        description: What the tool does. This is what retrieval matches against.
        metadata: Free-form extra fields, kept in the index and returned with results.
        obj: The original framework object (a LangChain ``BaseTool`` or LlamaIndex tool), if
            the tool was built from one, so that agents get back something they can call.

    Example:
        .. code-block:: python

            from qta_integrations import Tool

            tool = Tool(id="weather", name="get_weather", description="Current weather for a city.")
            print(tool.text)  # get_weather: Current weather for a city.
    """

    id: str
    name: str
    description: str
    metadata: Mapping[str, Any] = field(default_factory=dict, compare=False)
    obj: Any = field(default=None, compare=False, repr=False)

    @property
    def text(self) -> str:
        """The text that is embedded and shown to the rewriter: ``"name: description"``."""
        if not self.name or self.name == self.description:
            return self.description
        return f"{self.name}: {self.description}"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, position: int | None = None) -> Tool:
        """Build a tool from a mapping with ``id``, ``name`` and ``description`` keys.

        ``id`` defaults to ``name`` when missing; every other key goes to ``metadata``.

        Raises:
            ValueError: if neither ``id`` nor ``name`` is given, or a field is not a string.
        """
        where = f"tool #{position}" if position is not None else "tool"
        if not isinstance(data, Mapping):
            msg = f"{where} must be a mapping with 'id', 'name' and 'description', got {data!r}."
            raise TypeError(msg)
        raw_id = data.get("id", data.get("name"))
        if raw_id is None or (isinstance(raw_id, str) and not raw_id.strip()):
            msg = f"{where} has no 'id' (and no 'name' to use as one): {dict(data)!r}. Add an 'id'."
            raise ValueError(msg)
        name = data.get("name", raw_id)
        description = data.get("description", "")
        if not isinstance(description, str):
            msg = f"{where} (id {raw_id!r}) has a non-string description {description!r}."
            raise TypeError(msg)
        extra = {k: v for k, v in data.items() if k not in {"id", "name", "description"}}
        return cls(id=str(raw_id), name=str(name), description=description, metadata=extra)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-serialisable form (``obj`` is not serialised)."""
        return {"id": self.id, "name": self.name, "description": self.description, **self.metadata}


ToolsLike = Any
"""Anything `ToolCatalog.from_any` accepts: a catalogue, a path, or a sequence of tools/dicts."""


class ToolCatalog(Sequence[Tool]):
    """An ordered, validated collection of tools, indexed by id.

    Validation happens once, here: ids must be unique, descriptions non-empty, and the
    catalogue non-empty. Errors name the offending id and say how to fix it.

    Example:
        .. code-block:: python

            from qta_integrations import ToolCatalog

            catalog = ToolCatalog.from_dicts([
                {"id": "weather", "name": "get_weather", "description": "Weather for a city."},
                {"id": "stocks", "name": "get_quote", "description": "Latest stock price."},
            ])
            print(len(catalog), catalog["stocks"].name)  # 2 get_quote
    """

    def __init__(self, tools: Iterable[Tool]) -> None:
        self._tools: list[Tool] = list(tools)
        if not self._tools:
            msg = "The tool catalogue is empty. Pass at least one tool."
            raise ValueError(msg)
        self._by_id: dict[str, Tool] = {}
        for tool in self._tools:
            if not isinstance(tool, Tool):
                msg = f"Expected Tool records, got {type(tool).__name__}: {tool!r}."
                raise TypeError(msg)
            if not tool.id.strip():
                msg = f"Tool {tool.name!r} has an empty id. Give every tool a non-empty id."
                raise ValueError(msg)
            if tool.id in self._by_id:
                msg = (
                    f"Duplicate tool id {tool.id!r}. Tool ids must be unique: rename one of the "
                    "tools or give it an explicit 'id'."
                )
                raise ValueError(msg)
            if not tool.description.strip():
                msg = (
                    f"Tool {tool.id!r} has an empty description. Retrieval matches on the "
                    "description: write one sentence saying what the tool does."
                )
                raise ValueError(msg)
            self._by_id[tool.id] = tool

    # -- constructors -----------------------------------------------------------------

    @classmethod
    def from_dicts(cls, records: Iterable[Mapping[str, Any]]) -> ToolCatalog:
        """Build from mappings with ``id``, ``name`` and ``description`` (see `Tool.from_dict`)."""
        return cls(Tool.from_dict(r, position=i) for i, r in enumerate(records))

    @classmethod
    def from_file(cls, path: str | Path) -> ToolCatalog:
        """Load a JSON list or a JSONL file of ``{"id", "name", "description"}`` records."""
        return cls.from_dicts(read_records(path))

    @classmethod
    def from_langchain_tools(cls, tools: Iterable[Any]) -> ToolCatalog:
        """Build from LangChain ``BaseTool`` objects; the tool name is the id."""
        return cls(
            Tool(id=t.name, name=t.name, description=t.description or "", obj=t) for t in tools
        )

    @classmethod
    def from_llama_index_tools(cls, tools: Iterable[Any]) -> ToolCatalog:
        """Build from LlamaIndex tools (``FunctionTool`` etc.); ``metadata.name`` is the id."""
        built = []
        for t in tools:
            meta = t.metadata
            name = meta.get_name() if hasattr(meta, "get_name") else meta.name
            built.append(Tool(id=name, name=name, description=meta.description or "", obj=t))
        return cls(built)

    @classmethod
    def from_any(cls, tools: ToolsLike) -> ToolCatalog:
        """Coerce any supported input into a catalogue.

        Accepts a `ToolCatalog`, a path to a JSON/JSONL file, or a sequence whose items are
        all `Tool` records, mappings, LangChain tools or LlamaIndex tools.

        Raises:
            TypeError: for an unsupported input, naming its type.
        """
        if isinstance(tools, ToolCatalog):
            return tools
        if isinstance(tools, (str, Path)):
            return cls.from_file(tools)
        if isinstance(tools, Mapping):
            msg = (
                "Got a single mapping for `tools`; pass a list of tool records "
                "([{'id': ..., 'name': ..., 'description': ...}, ...])."
            )
            raise TypeError(msg)
        items = list(tools)
        if not items:
            return cls([])  # raises the empty-catalogue error
        first = items[0]
        if isinstance(first, Tool):
            return cls(items)
        if isinstance(first, Mapping):
            return cls.from_dicts(items)
        if _is_langchain_tool(first):
            return cls.from_langchain_tools(items)
        if _is_llama_index_tool(first):
            return cls.from_llama_index_tools(items)
        msg = (
            f"Unsupported tool type {type(first).__name__}. Pass Tool records, dicts with "
            "'id'/'name'/'description', LangChain BaseTools, LlamaIndex tools, "
            "or a JSON/JSONL path."
        )
        raise TypeError(msg)

    # -- lookups ----------------------------------------------------------------------

    @property
    def ids(self) -> list[str]:
        """Tool ids in catalogue order."""
        return [t.id for t in self._tools]

    def get(self, tool_id: str) -> Tool | None:
        """Return the tool with this id, or None."""
        return self._by_id.get(tool_id)

    def check_ids(self, ids: Iterable[str], *, context: str = "labels") -> list[str]:
        """Return ``ids`` as a list, raising if any is not in the catalogue.

        Raises:
            ValueError: listing every unknown id (and a few known ones, as a hint).
        """
        ids = list(ids)
        unknown = sorted({i for i in ids if i not in self._by_id})
        if unknown:
            hint = ", ".join(repr(i) for i in self.ids[:5])
            msg = (
                f"{context} name {len(unknown)} tool id(s) that are not in the catalogue: "
                f"{unknown}. Known ids look like: {hint}, ..."
            )
            raise ValueError(msg)
        return ids

    def to_dicts(self) -> list[dict[str, Any]]:
        """Serialisable records, in order."""
        return [t.to_dict() for t in self._tools]

    def __contains__(self, item: object) -> bool:
        if isinstance(item, Tool):
            return self._by_id.get(item.id) == item
        return item in self._by_id

    @overload
    def __getitem__(self, key: int) -> Tool: ...
    @overload
    def __getitem__(self, key: slice) -> list[Tool]: ...
    @overload
    def __getitem__(self, key: str) -> Tool: ...
    def __getitem__(self, key: int | slice | str) -> Tool | list[Tool]:
        if isinstance(key, str):
            try:
                return self._by_id[key]
            except KeyError:
                self.check_ids([key], context="lookup")
                raise
        return self._tools[key]

    def __iter__(self) -> Iterator[Tool]:
        return iter(self._tools)

    def __len__(self) -> int:
        return len(self._tools)

    def __repr__(self) -> str:
        return f"ToolCatalog({len(self)} tools)"


def read_records(path: str | Path) -> list[Any]:
    """Read a JSON list or a JSONL file (one JSON value per non-empty line)."""
    path = Path(path)
    if not path.exists():
        msg = f"File not found: {str(path)!r}."
        raise FileNotFoundError(msg)
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    data = json.loads(text)
    if not isinstance(data, list):
        msg = f"{str(path)!r} must hold a JSON list of records, got {type(data).__name__}."
        raise ValueError(msg)
    return data


def _is_langchain_tool(obj: Any) -> bool:
    try:
        from langchain_core.tools import BaseTool
    except ImportError:  # pragma: no cover - langchain-core is a dependency
        return False
    return isinstance(obj, BaseTool)


def _is_llama_index_tool(obj: Any) -> bool:
    try:
        from llama_index.core.tools.types import BaseTool
    except ImportError:  # pragma: no cover - llama-index-core is a dependency
        return False
    return isinstance(obj, BaseTool)
