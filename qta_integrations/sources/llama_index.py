"""Tools from LlamaIndex, and LangChain tools (MCP's) as LlamaIndex tools.

* `tools_from_llama_index`: each LlamaIndex tool (``FunctionTool`` ...) becomes a `Tool`; its
  ``metadata.name`` is the id. Their parameters are not indexed separately: a
  ``FunctionTool.from_defaults`` description already starts with the function's signature.
* `llama_index_tool_from_langchain`: a LlamaIndex ``FunctionTool`` that calls a LangChain tool
  and offers the model that tool's own JSON Schema; `qta_integrations.sources.mcp` uses it to
  give LlamaIndex agents MCP tools.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llama_index.core.tools import FunctionTool, ToolMetadata
from llama_index.core.tools.types import BaseTool

from qta_integrations.sources.base import Tool
from qta_integrations.sources.langchain import tool_json_schema

if TYPE_CHECKING:
    from langchain_core.tools import BaseTool as LangChainTool

__all__ = ["is_llama_index_tool", "llama_index_tool_from_langchain", "tools_from_llama_index"]

# The keys LlamaIndex's own ToolMetadata.get_parameters_dict keeps from a schema.
_SCHEMA_KEYS = ("type", "properties", "required", "definitions", "$defs")


def is_llama_index_tool(obj: Any) -> bool:
    """Whether ``obj`` is a LlamaIndex tool (``llama_index.core.tools.types.BaseTool``)."""
    return isinstance(obj, BaseTool)


def tools_from_llama_index(tools: Iterable[Any]) -> list[Tool]:
    """The `Tool`s of LlamaIndex tools; `ToolCatalog.from_llama_index_tools` is the entry point."""
    built = []
    for t in tools:
        meta = t.metadata
        name = meta.get_name() if hasattr(meta, "get_name") else meta.name
        built.append(Tool(id=name, name=name, description=meta.description or "", obj=t))
    return built


def llama_index_tool_from_langchain(
    tool: LangChainTool, *, schema: Mapping[str, Any] | None = None
) -> FunctionTool:
    """A LlamaIndex ``FunctionTool`` that calls a LangChain tool (``ainvoke``; text result).

    Args:
        tool: The LangChain tool (for example an MCP tool from ``langchain-mcp-adapters``).
        schema: The JSON Schema the model is offered; default the tool's own
            (`qta_integrations.sources.langchain.tool_json_schema`).
    """
    if schema is None:
        schema = tool_json_schema(tool)
    metadata = _SchemaToolMetadata(
        description=tool.description or "",
        name=tool.name,
        schema={k: v for k, v in schema.items() if k in _SCHEMA_KEYS},
    )

    async def acall(**kwargs: Any) -> str:
        return _as_text(await tool.ainvoke(kwargs))

    return FunctionTool(async_fn=acall, metadata=metadata)


def _as_text(content: Any) -> str:
    """A tool result as text: MCP results are lists of content blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [
            str(b.get("text", "")) if isinstance(b, Mapping) and b.get("type") == "text" else str(b)
            for b in content
        ]
        return "\n".join(parts)
    return str(content)


@dataclass
class _SchemaToolMetadata(ToolMetadata):
    """ToolMetadata that offers the model a JSON Schema as it is (no pydantic model needed)."""

    schema: dict[str, Any] = field(default_factory=dict)

    def get_parameters_dict(self) -> dict[str, Any]:
        return dict(self.schema)
