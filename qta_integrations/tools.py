"""The tool catalogue: the `ToolCatalog` that validates `Tool` records as a whole.

Every other part of the package speaks in tool ids; this module is the one place that checks
a catalogue (unique ids, non-empty descriptions, not empty). Where the tools come from is the
job of the sources (`qta_integrations.sources`: JSON/JSONL files, LangChain tools, LlamaIndex
tools, MCP servers); the constructors here (`ToolCatalog.from_file`, `from_langchain_tools`,
`from_llama_index_tools`, `from_any`) are their public entry points. `Tool` and
`ToolParameter` are defined in `qta_integrations.sources.base` and exported here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, overload

from qta_integrations.sources.base import Tool, ToolParameter, parameters_from_schema
from qta_integrations.sources.files import tools_from_file
from qta_integrations.validation import describe

__all__ = ["Tool", "ToolCatalog", "ToolParameter", "ToolsLike", "parameters_from_schema"]


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
    def from_file(cls, path: str | Path, *, require_names: bool = False) -> ToolCatalog:
        """Load a JSON list or a JSONL file of ``{"id", "name", "description"}`` records.

        The content decides which of the two the file is (see `read_numbered_records`). Every
        error names the file and the line of the record.

        Args:
            path: The file.
            require_names: Refuse records without a ``name`` key instead of using the id as
                the name.

        Raises:
            FileNotFoundError: if the file does not exist.
            IsADirectoryError: if ``path`` is a directory.
            ValueError: for a file that is not JSON/JSONL, holds no tools, or a bad record
                (also one of the wrong type: it is the file's content that is wrong).
        """
        return cls(tools_from_file(path, require_names=require_names))

    @classmethod
    def from_langchain_tools(cls, tools: Iterable[Any]) -> ToolCatalog:
        """Build from LangChain ``BaseTool`` objects; the tool name is the id.

        A tool with an args schema indexes its parameters too (see
        `qta_integrations.sources.langchain`).
        """
        from qta_integrations.sources.langchain import tools_from_langchain

        return cls(tools_from_langchain(tools))

    @classmethod
    def from_llama_index_tools(cls, tools: Iterable[Any]) -> ToolCatalog:
        """Build from LlamaIndex tools (``FunctionTool`` etc.); ``metadata.name`` is the id."""
        from qta_integrations.sources.llama_index import tools_from_llama_index

        return cls(tools_from_llama_index(tools))

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
        if isinstance(tools, (bytes, bytearray)) or not isinstance(tools, Iterable):
            msg = (
                f"Unsupported tools argument {type(tools).__name__}: {describe(tools)}. Pass a "
                "list of Tool records, dicts with 'id'/'name'/'description', LangChain or "
                "LlamaIndex tools, or a JSON/JSONL path."
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
        from qta_integrations.sources.langchain import is_langchain_tool

        if is_langchain_tool(first):
            return cls.from_langchain_tools(items)
        from qta_integrations.sources.llama_index import is_llama_index_tool

        if is_llama_index_tool(first):
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
