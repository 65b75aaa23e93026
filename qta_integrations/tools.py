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

from qta_integrations.validation import describe

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
    def from_dict(
        cls, data: Mapping[str, Any], *, position: int | None = None, source: str | None = None
    ) -> Tool:
        """Build a tool from a mapping with ``id``, ``name`` and ``description`` keys.

        ``id`` must be a string or an int (converted to a string); it defaults to ``name`` when
        missing. ``name`` defaults to the id when missing; when given it must be a string
        (``""`` means no name: the description alone is embedded). Every other key goes to
        ``metadata``.

        Args:
            data: The record.
            position: Its 0-based position in a list, named in errors.
            source: Where it came from, named in errors (e.g. ``"line 3 of 'tools.jsonl'"``).

        Raises:
            TypeError: if ``data`` is not a mapping, or the id, name or description has the
                wrong type.
            ValueError: if neither ``id`` nor ``name`` is given, or the name is only whitespace.
        """
        where = f"tool #{position}" if position is not None else "tool"
        if source:
            where = f"{where} ({source})"
        if not isinstance(data, Mapping):
            msg = (
                f"{where} must be a mapping with 'id', 'name' and 'description', got "
                f"{type(data).__name__}: {describe(data)}."
            )
            raise TypeError(msg)
        raw_id = data.get("id", data.get("name"))
        if raw_id is None or (isinstance(raw_id, str) and not raw_id.strip()):
            msg = (
                f"{where} has no 'id' (and no 'name' to use as one): {describe(dict(data))}. "
                "Add an 'id'."
            )
            raise ValueError(msg)
        if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)):
            key = "id" if "id" in data else "name"
            msg = (
                f"{where} has {key} {describe(raw_id)} of type {type(raw_id).__name__}; tool ids "
                'must be strings (ints are converted). Use a string such as "get_weather".'
            )
            raise TypeError(msg)
        tool_id = str(raw_id)
        name = data.get("name", tool_id)
        if not isinstance(name, str):
            msg = (
                f"{where} (id {tool_id!r}) has name {describe(name)} of type "
                f"{type(name).__name__}; a name must be a string. Give the tool a name, or "
                "leave 'name' out to use the id."
            )
            raise TypeError(msg)
        if name and not name.strip():
            msg = (
                f"{where} (id {tool_id!r}) has a blank name {name!r}. Give the tool a name, "
                "use \"\" for no name (the description alone is embedded), or leave 'name' out."
            )
            raise ValueError(msg)
        description = data.get("description", "")
        if not isinstance(description, str):
            msg = (
                f"{where} (id {tool_id!r}) has a non-string description {describe(description)}."
                " Write one sentence saying what the tool does."
            )
            raise TypeError(msg)
        extra = {k: v for k, v in data.items() if k not in {"id", "name", "description"}}
        return cls(id=tool_id, name=name, description=description, metadata=extra)

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
        path = Path(path)
        shown = str(path)
        tools: list[Tool] = []
        lines: dict[str, int] = {}
        for position, (line, record) in enumerate(read_numbered_records(path)):
            source = f"line {line} of {shown!r}"
            if require_names and isinstance(record, Mapping) and "name" not in record:
                msg = (
                    f'tool #{position} ({source}) has no \'name\'. Add one ("name": "" '
                    "indexes the description alone), or opt in to using the id as the name "
                    "(names_from_ids=True; CLI: --names-from-ids)."
                )
                raise ValueError(msg)
            try:
                tool = Tool.from_dict(record, position=position, source=source)
            except TypeError as err:  # the file's content is wrong, not the argument's type
                raise ValueError(str(err)) from None
            if tool.id in lines:
                msg = (
                    f"Duplicate tool id {tool.id!r} on lines {lines[tool.id]} and {line} of "
                    f"{shown!r}. Tool ids must be unique: rename one of the tools or give it an "
                    "explicit 'id'."
                )
                raise ValueError(msg)
            if not tool.description.strip():
                msg = (
                    f"Tool {tool.id!r} ({source}) has an empty description. Retrieval matches "
                    "on the description: write one sentence saying what the tool does."
                )
                raise ValueError(msg)
            lines[tool.id] = line
            tools.append(tool)
        if not tools:
            msg = f"{shown!r} holds no tools (an empty list). Add at least one tool record."
            raise ValueError(msg)
        return cls(tools)

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
    """Read the records of a JSON or JSONL file (see `read_numbered_records`)."""
    return [record for _, record in read_numbered_records(path)]


def read_numbered_records(path: str | Path) -> list[tuple[int, Any]]:
    """Read the records of a JSON or JSONL file, each with the 1-based line it starts on.

    The format is decided by the content, not the file name: a file whose first non-blank
    character is ``[`` or ``{`` and that parses as one JSON document is JSON (a list of
    records, or one record); anything else is JSONL, one JSON value per non-blank line. A
    UTF-8 byte-order mark is ignored.

    Raises:
        FileNotFoundError: if the file does not exist.
        IsADirectoryError: if ``path`` is a directory.
        ValueError: if the file is empty, not UTF-8, or not valid JSON / JSONL; the message
            names the file, the line (and column) and what to do.
    """
    path = Path(path)
    shown = str(path)
    if not path.exists():
        msg = f"File not found: {shown!r}. Pass the path of an existing JSON or JSONL file."
        raise FileNotFoundError(msg)
    if path.is_dir():
        msg = f"{shown!r} is a directory, not a file. Pass the JSON or JSONL file inside it."
        raise IsADirectoryError(msg)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        msg = (
            f"{shown!r} is not UTF-8 text (byte {err.start}: {err.reason}). Save it as UTF-8 "
            "JSON or JSONL."
        )
        raise ValueError(msg) from None
    stripped = text.lstrip()
    if not stripped:
        msg = (
            f"{shown!r} is empty. Write a JSON list of records, or one JSON object per line "
            "(JSONL)."
        )
        raise ValueError(msg)
    document_error: json.JSONDecodeError | None = None
    if stripped[0] in "[{":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            document_error = err
        else:
            if isinstance(data, list):
                return list(zip(_item_lines(text), data, strict=True))
            return [(text.count("\n", 0, len(text) - len(stripped)) + 1, data)]
        if stripped[0] == "[":
            raise _json_error(shown, document_error) from None
    records: list[tuple[int, Any]] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            records.append((number, json.loads(line)))
        except json.JSONDecodeError as err:
            if not records and document_error is not None:
                # Starts like one JSON object but is neither that nor JSONL: report the document.
                raise _json_error(shown, document_error) from None
            msg = (
                f"Line {number} of {shown!r} is not valid JSON ({err.msg} at column {err.colno})"
                f": {describe(line.strip())}. Each non-blank line of a JSONL file must be one "
                "JSON object; fix or delete that line."
            )
            raise ValueError(msg) from None
    return records


def _json_error(shown: str, err: json.JSONDecodeError) -> ValueError:
    msg = (
        f"{shown!r} is not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}. Fix "
        "that line, or write the records as JSONL (one JSON object per line)."
    )
    return ValueError(msg)


def _item_lines(text: str) -> list[int]:
    """The line on which each item of the top-level JSON list in ``text`` starts."""
    decoder = json.JSONDecoder()
    whitespace = " \t\n\r"
    pos = text.index("[") + 1
    line, counted = 1, 0
    lines: list[int] = []
    while True:
        while pos < len(text) and text[pos] in whitespace:
            pos += 1
        if pos >= len(text) or text[pos] == "]":
            return lines
        line += text.count("\n", counted, pos)
        counted = pos
        lines.append(line)
        _, pos = decoder.raw_decode(text, pos)
        while pos < len(text) and text[pos] in whitespace:
            pos += 1
        if pos < len(text) and text[pos] == ",":
            pos += 1


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
