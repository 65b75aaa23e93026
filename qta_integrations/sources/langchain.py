"""Tools from LangChain: each ``BaseTool`` becomes a `Tool` that keeps the object to call.

The tool's name is its id (the name the model calls); a tool with an args schema (every
``@tool`` function, every ``StructuredTool``, every MCP tool from ``langchain-mcp-adapters``)
indexes its parameters' names and descriptions too (`Tool.parameters`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from qta_integrations.sources.base import Tool, ToolParameter, parameters_from_schema

if TYPE_CHECKING:
    from langchain_core.tools import BaseTool

__all__ = [
    "is_langchain_tool",
    "tool_from_langchain",
    "tool_json_schema",
    "tools_from_langchain",
]

logger = logging.getLogger(__name__)


def is_langchain_tool(obj: Any) -> bool:
    """Whether ``obj`` is a LangChain ``BaseTool``."""
    try:
        from langchain_core.tools import BaseTool
    except ImportError:  # pragma: no cover - langchain-core is a dependency
        return False
    return isinstance(obj, BaseTool)


def tool_from_langchain(
    tool: BaseTool,
    *,
    tool_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    source: str | None = None,
) -> Tool:
    """The `Tool` of a LangChain tool: its name, description, parameters and the tool itself.

    Args:
        tool: The LangChain tool.
        tool_id: The catalogue id; default the tool's name.
        metadata: Extra metadata kept in the index and returned with results.
        source: How errors name the tool (default ``"LangChain tool '<name>'"``).

    Raises:
        ValueError: if the tool's args schema is a JSON Schema that is not an object.

    Example:
        .. code-block:: python

            from langchain_core.tools import tool
            from qta_integrations.sources.langchain import tool_from_langchain

            @tool
            def get_weather(city: str) -> str:
                \"\"\"Weather forecast for a city.\"\"\"
                return "Sunny."

            print(tool_from_langchain(get_weather).text)
            # get_weather: Weather forecast for a city. Parameters: city.
    """
    return Tool(
        id=tool.name if tool_id is None else tool_id,
        name=tool.name,
        description=tool.description or "",
        parameters=_parameters(tool, source or f"LangChain tool {tool.name!r}"),
        metadata=dict(metadata or {}),
        obj=tool,
    )


def tools_from_langchain(tools: Iterable[BaseTool]) -> list[Tool]:
    """`tool_from_langchain` of each tool (entry point: `ToolCatalog.from_langchain_tools`)."""
    return [tool_from_langchain(t) for t in tools]


def tool_json_schema(tool: BaseTool) -> dict[str, Any]:
    """The JSON Schema a model is offered for ``tool`` (``tool_call_schema``, as a dict).

    Raises:
        Exception: whatever pydantic raises for a field type it cannot render.
    """
    schema = tool.tool_call_schema  # injected arguments left out
    if isinstance(schema, Mapping):
        return dict(schema)
    if hasattr(schema, "model_json_schema"):
        return dict(schema.model_json_schema())
    return dict(schema.schema())  # a pydantic.v1 model


def _parameters(tool: BaseTool, where: str) -> tuple[ToolParameter, ...]:
    if tool.args_schema is None:
        return ()  # a BaseTool subclass that takes one string: nothing to index
    try:
        schema = tool_json_schema(tool)
    except Exception as err:  # a field type pydantic cannot render as JSON Schema
        logger.debug("%s: no JSON Schema (%s); indexing its field names only.", where, err)
        fields = getattr(tool.tool_call_schema, "model_fields", {})
        return tuple(ToolParameter(n, f.description or "") for n, f in fields.items())
    return parameters_from_schema(schema, where=where)
