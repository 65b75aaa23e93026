"""Sources: where a catalogue's tools come from, one module per kind.

Each source turns what the user has into `Tool` records (`qta_integrations.sources.base`);
`qta_integrations.tools.ToolCatalog` validates them as a whole, and its constructors are the
public entry points.

* `qta_integrations.sources.files`: JSON and JSONL files (``ToolCatalog.from_file``);
* `qta_integrations.sources.langchain`: LangChain ``BaseTool``s (``from_langchain_tools``);
* `qta_integrations.sources.llama_index`: LlamaIndex tools (``from_llama_index_tools``);
* `qta_integrations.sources.mcp`: the tools of MCP servers (``QTARetriever.from_mcp``), with
  the ``mcp`` extra.

Nothing is imported here, so that importing one source loads no other source's framework.
"""
