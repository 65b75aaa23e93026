"""What every source produces: the `Tool` record, with its `ToolParameter`s.

A source (`qta_integrations.sources.files`, `.langchain`, `.llama_index`, `.mcp`) turns what
the user has into `Tool` records; `qta_integrations.tools.ToolCatalog` validates them as a
whole. `Tool` is re-exported by `qta_integrations.tools`, its public home.

A tool's indexed text (`Tool.text`) is ``"name: description"``; a tool whose input schema names
parameters (MCP tools, LangChain tools with an args schema, records with ``"parameters"``) gets
them as a short suffix, so a query that names an argument ("... for the city of Oslo") finds the
tool that takes it. A tool without parameters indexes exactly ``"name: description"``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from qta_integrations.validation import describe

__all__ = ["MAX_PARAMETER_CHARS", "Tool", "ToolParameter", "parameters_from_schema"]

MAX_PARAMETER_CHARS = 100
"""A parameter's description is clipped to about this many characters in `Tool.text`."""

_RECORD_KEYS = frozenset({"id", "name", "description", "parameters"})


@dataclass(frozen=True)
class ToolParameter:
    """One input of a tool, from its input schema: the name and what it means.

    Example:
        .. code-block:: python

            from qta_integrations.tools import ToolParameter

            print(ToolParameter("city", "City to forecast.").text)  # city (City to forecast)
    """

    name: str
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            msg = f"A tool parameter's name must be a non-empty str, got {describe(self.name)}."
            raise ValueError(msg)
        if not isinstance(self.description, str):
            msg = (
                f"Parameter {self.name!r} has a non-string description "
                f'{describe(self.description)}; use a str ("" for none).'
            )
            raise TypeError(msg)

    @property
    def text(self) -> str:
        """``"name (description)"``, the description on one line and clipped; the name alone."""
        description = " ".join(self.description.split()).rstrip(".")
        if len(description) > MAX_PARAMETER_CHARS:
            description = description[:MAX_PARAMETER_CHARS].rsplit(" ", 1)[0] + "..."
        return f"{self.name} ({description})" if description else self.name

    def to_dict(self) -> dict[str, str]:
        """``{"name": ..., "description": ...}``."""
        return {"name": self.name, "description": self.description}


@dataclass(frozen=True)
class Tool:
    """One tool in the catalogue.

    Attributes:
        id: Unique, stable identifier. Used as the vector-store id and in labels.
        name: Human-readable name (for LangChain/LlamaIndex/MCP tools, the name the model calls).
        description: What the tool does. This is what retrieval matches against.
        parameters: The tool's inputs (names and descriptions, from its input schema), indexed
            after the description; empty for a tool without an input schema.
        metadata: Free-form extra fields, kept in the index and returned with results.
        obj: The original framework object (a LangChain ``BaseTool`` or LlamaIndex tool), if
            the tool was built from one, so that agents get back something they can call.

    Example:
        .. code-block:: python

            from qta_integrations import Tool
            from qta_integrations.tools import ToolParameter

            tool = Tool(id="weather", name="get_weather", description="Current weather for a city.")
            print(tool.text)  # get_weather: Current weather for a city.
            tool = Tool(id="weather", name="get_weather", description="Weather for a city.",
                        parameters=(ToolParameter("city", "City name"),))
            print(tool.text)  # get_weather: Weather for a city. Parameters: city (City name).
    """

    id: str
    name: str
    description: str
    parameters: tuple[ToolParameter, ...] = field(default=(), kw_only=True)
    metadata: Mapping[str, Any] = field(default_factory=dict, compare=False)
    obj: Any = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.parameters:
            parameters = tuple(self.parameters)
            wrong = [p for p in parameters if not isinstance(p, ToolParameter)]
            if isinstance(self.parameters, (str, Mapping)) or wrong:
                shown = describe(wrong[0] if wrong else self.parameters)
                msg = (
                    f"Tool {self.id!r}: parameters must be ToolParameter records, got {shown}. "
                    "Use parameters=(ToolParameter(name, description), ...), or "
                    "parameters_from_schema(json_schema) for a JSON Schema."
                )
                raise TypeError(msg)
            object.__setattr__(self, "parameters", parameters)

    @property
    def text(self) -> str:
        """The text that is embedded and shown to the rewriter.

        ``"name: description"`` (the description alone when there is no name), followed by
        ``" Parameters: a (what a is), b."`` when the tool has parameters.
        """
        if not self.name or self.name == self.description:
            text = self.description
        else:
            text = f"{self.name}: {self.description}"
        if not self.parameters:
            return text
        text = text.rstrip()
        end = "" if text.endswith((".", "!", "?")) else "."
        return f"{text}{end} Parameters: {', '.join(p.text for p in self.parameters)}."

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, position: int | None = None, source: str | None = None
    ) -> Tool:
        """Build a tool from a mapping with ``id``, ``name`` and ``description`` keys.

        ``id`` must be a string or an int (converted to a string); it defaults to ``name`` when
        missing. ``name`` defaults to the id when missing; when given it must be a string
        (``""`` means no name: the description alone is embedded). ``parameters``, when given,
        is a JSON Schema object (an OpenAI function's ``parameters``, an MCP ``inputSchema``)
        or a list of ``{"name", "description"}`` records (what `to_dict` writes). Every other
        key goes to ``metadata``.

        Args:
            data: The record.
            position: Its 0-based position in a list, named in errors.
            source: Where it came from, named in errors (e.g. ``"line 3 of 'tools.jsonl'"``).

        Raises:
            TypeError: if ``data`` is not a mapping, or the id, name or description has the
                wrong type.
            ValueError: if neither ``id`` nor ``name`` is given, the name is only whitespace, or
                ``parameters`` is a JSON Schema that is not an object.
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
        parameters = _parameters_of_record(
            data.get("parameters") or (), f"{where} (id {tool_id!r})"
        )
        extra = {k: v for k, v in data.items() if k not in _RECORD_KEYS}
        return cls(
            id=tool_id, name=name, description=description, parameters=parameters, metadata=extra
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-serialisable form (``obj`` is not serialised).

        ``parameters`` is written only when the tool has some, so a record without parameters
        reads back as it was written.
        """
        record: dict[str, Any] = {"id": self.id, "name": self.name, "description": self.description}
        if self.parameters:
            record["parameters"] = [p.to_dict() for p in self.parameters]
        return {**record, **self.metadata}


def parameters_from_schema(schema: Any, *, where: str = "tool") -> tuple[ToolParameter, ...]:
    """The parameters of a JSON Schema object: each property's name and description, in order.

    The schema is a tool's input schema: an MCP tool's ``inputSchema``, a LangChain tool's
    args schema as JSON, an OpenAI function's ``parameters``. A schema without ``"type"`` counts
    as an object; ``{}`` has no parameters.

    Args:
        schema: The JSON Schema.
        where: The tool it belongs to, named in errors (e.g. ``"MCP server 'crm' tool 'find'"``).

    Raises:
        ValueError: if the schema is not a mapping, its type is not ``"object"``, or its
            ``properties`` is not a mapping.

    Example:
        >>> schema = {"type": "object", "properties": {"city": {"description": "City name"}}}
        >>> parameters_from_schema(schema)
        (ToolParameter(name='city', description='City name'),)
    """
    if not isinstance(schema, Mapping):
        msg = (
            f"{where} has an input schema of type {type(schema).__name__}: {describe(schema)}. "
            'A tool\'s input schema must be a JSON Schema object: {"type": "object", '
            '"properties": {"arg": {"type": "string", "description": "..."}}}.'
        )
        raise ValueError(msg)
    kind = schema.get("type", "object")
    if kind != "object":
        msg = (
            f"{where} has an input schema of type {describe(kind)}, not 'object': "
            f"{describe(dict(schema))}. Tool inputs are named arguments: give the tool an input "
            'schema {"type": "object", "properties": {...}} with one property per argument.'
        )
        raise ValueError(msg)
    properties = schema.get("properties") or {}
    if not isinstance(properties, Mapping):
        msg = (
            f"{where} has input schema 'properties' of type {type(properties).__name__}: "
            f"{describe(properties)}. 'properties' maps each argument's name to its schema."
        )
        raise ValueError(msg)
    parameters = []
    for name, spec in properties.items():
        description = spec.get("description", "") if isinstance(spec, Mapping) else ""
        if not isinstance(name, str) or not name.strip():
            msg = f"{where} has an input schema property with no name: {describe(name)}."
            raise ValueError(msg)
        parameters.append(ToolParameter(name, description if isinstance(description, str) else ""))
    return tuple(parameters)


def _parameters_of_record(value: Any, where: str) -> tuple[ToolParameter, ...]:
    """``parameters`` of a tool record: a JSON Schema object or ``[{"name", "description"}]``."""
    if isinstance(value, Mapping):
        return parameters_from_schema(value, where=where)
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        msg = (
            f"{where} has 'parameters' {describe(value)} of type {type(value).__name__}. Give a "
            'JSON Schema object ({"type": "object", "properties": {...}}) or a list of '
            '{"name": ..., "description": ...} records.'
        )
        raise TypeError(msg)
    parameters = []
    for item in value:
        name: Any = item.get("name") if isinstance(item, Mapping) else item
        description: Any = (item.get("description") or "") if isinstance(item, Mapping) else ""
        try:
            parameters.append(ToolParameter(name, description))
        except (TypeError, ValueError) as err:
            msg = (
                f"{where} has a bad parameter {describe(item)} ({str(err).rstrip('.')}). Each "
                'parameter is a name or a {"name": ..., "description": ...} record.'
            )
            raise TypeError(msg) from None
    return tuple(parameters)
