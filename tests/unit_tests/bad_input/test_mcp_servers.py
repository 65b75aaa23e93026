"""Bad MCP input: servers that are down or hang, bad tools, bad connections; each error names
the server, its URL or command, and the fix."""

from __future__ import annotations

import contextlib
import sys
from typing import Any

import pytest
from mcp.server.fastmcp import FastMCP
from mcp.types import Tool as MCPTool

from qta_integrations import QTARetriever
from qta_integrations.sources.mcp import aload_mcp_tools, load_mcp_tools
from qta_integrations.testing import KeywordEmbeddings
from tests.unit_tests.mcp_servers import (
    HttpServer,
    build_server,
    catalogue,
    closed_port_url,
    silent_port,
)

GOOD = {"name": "get_forecast", "description": "Weather forecast for a city.", "params": {}}


@pytest.fixture(scope="module")
def good_server() -> Any:
    with HttpServer(build_server("weather", [GOOD])) as server:
        yield server


def test_a_server_that_is_down(good_server: HttpServer) -> None:
    url = closed_port_url()
    connections = {"weather": good_server.connection, "crm": {"transport": "http", "url": url}}
    with pytest.raises(ConnectionError) as err:
        load_mcp_tools(connections)
    message = str(err.value)
    assert message.startswith(f"Could not list the tools of MCP server 'crm' (http, {url}): ")
    assert "ConnectError" in message
    assert "Check that the server is running and listening at that URL" in message
    assert "fix 'url' in connections['crm']" in message


def test_a_command_that_does_not_exist() -> None:
    connections = {"files": {"transport": "stdio", "command": "/nonexistent/mcp-files"}}
    with pytest.raises(ConnectionError) as err:
        load_mcp_tools(connections)
    message = str(err.value)
    assert "MCP server 'files' (stdio, command '/nonexistent/mcp-files')" in message
    assert "FileNotFoundError" in message
    assert "Check that the command exists and starts an MCP server on stdio" in message


def test_a_command_that_exits_at_once() -> None:
    connections = {"files": {"transport": "stdio", "command": sys.executable, "args": ["-c", "0"]}}
    with pytest.raises(ConnectionError, match=r"MCP server 'files' \(stdio, command .* -c 0'\)"):
        load_mcp_tools(connections)


def test_a_stderr_without_a_file_descriptor(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    import mcp.client.stdio

    # The stdio client logs servers to sys.stderr as it was when mcp was imported.
    inner = mcp.client.stdio.stdio_client.__wrapped__  # type: ignore[attr-defined]
    monkeypatch.setattr(inner, "__defaults__", (io.StringIO(),))
    connections = {"files": {"transport": "stdio", "command": sys.executable, "args": ["-c", "0"]}}
    with pytest.raises(ConnectionError) as err:
        load_mcp_tools(connections)
    assert "UnsupportedOperation: fileno" in str(err.value)
    assert "sys.stderr, which here has no file descriptor" in str(err.value)
    assert "serve the server over streamable HTTP" in str(err.value)


def test_a_server_that_does_not_answer() -> None:
    with silent_port() as url:
        connections = {"slow": {"transport": "streamable_http", "url": url}}
        with pytest.raises(TimeoutError) as err:
            load_mcp_tools(connections, timeout=0.5)
    assert str(err.value) == (
        f"MCP server 'slow' (streamable_http, {url}) did not list its tools within 0.5 s. Check "
        "that it is running and speaks MCP at that address, or allow it more time (timeout=...)."
    )


def test_every_failing_server_is_named() -> None:
    first = closed_port_url()
    connections = {
        "a": {"transport": "streamable_http", "url": first},
        "b": {"transport": "stdio", "command": "/nonexistent/b"},
    }
    with pytest.raises(ConnectionError) as err:
        load_mcp_tools(connections)
    message = str(err.value)
    assert message.startswith("2 MCP servers could not be listed:\n- Could not list")
    assert f"'a' (streamable_http, {first})" in message and "'b' (stdio" in message


def test_a_tool_without_a_description() -> None:
    server = build_server("crm", [GOOD, {"name": "sync_now", "params": {}}])
    with HttpServer(server) as running, pytest.raises(ValueError) as err:
        load_mcp_tools({"crm": running.connection})
    assert str(err.value) == (
        "MCP server 'crm' tool 'sync_now' has no description. Retrieval matches tools by what "
        "they do: add a description on the server (for a FastMCP tool, a docstring or "
        "@mcp.tool(description=...)), or leave the server out of connections."
    )


class NonObjectSchemaServer(FastMCP):
    """A FastMCP server that lists one tool with a string input schema (MCP wants objects)."""

    async def list_tools(self) -> list[MCPTool]:
        tools = await super().list_tools()
        for tool in tools:
            if tool.name == "echo":
                tool.inputSchema = {"type": "string"}
        return tools


def test_an_input_schema_that_is_not_an_object() -> None:
    server = NonObjectSchemaServer("echo", stateless_http=True, json_response=True)
    server.add_tool(lambda: "echo", name="echo", description="Repeat what you are told.")
    with HttpServer(server) as running, pytest.raises(ValueError) as err:
        load_mcp_tools({"echo": running.connection})
    message = str(err.value)
    assert message.startswith(
        "MCP server 'echo' tool 'echo' has an input schema of type 'string', not 'object'"
    )
    assert 'give the tool an input schema {"type": "object", "properties": {...}}' in message


def test_duplicate_tool_names_across_servers() -> None:
    search = {"name": "search", "description": "Search for a keyword.", "params": {}}
    with contextlib.ExitStack() as stack:
        wiki = stack.enter_context(HttpServer(build_server("wiki", [search])))
        tickets = stack.enter_context(HttpServer(build_server("tickets", [search, GOOD])))
        connections = {"wiki": wiki.connection, "tickets": tickets.connection}
        with pytest.raises(ValueError) as err:
            load_mcp_tools(connections)
        # The retriever's constructor says the same.
        with pytest.raises(ValueError, match="each have a tool named 'search'"):
            QTARetriever.from_mcp(connections, embeddings=KeywordEmbeddings(), rewriter=None)
    assert str(err.value) == (
        "MCP servers 'wiki' and 'tickets' each have a tool named 'search' (1 name(s) clash in "
        "all). Their ids differ ('wiki.search', 'tickets.search'), but a model calls tools by "
        "name, and two tools bound to it cannot share one. Pass tool_name_prefix=True to bind "
        "every MCP tool as '<server>_<tool>' ('wiki_search', 'tickets_search'), or rename one "
        "of the tools on its server."
    )


def test_prefixed_names_that_still_clash() -> None:
    # "a_b" + "c" and "a" + "b_c" are both bound as "a_b_c".
    with contextlib.ExitStack() as stack:
        first = stack.enter_context(HttpServer(build_server("a_b", [{**GOOD, "name": "c"}])))
        second = stack.enter_context(HttpServer(build_server("a", [{**GOOD, "name": "b_c"}])))
        connections = {"a_b": first.connection, "a": second.connection}
        with pytest.raises(ValueError, match=r"named 'a_b_c'.*Rename one of the tools"):
            load_mcp_tools(connections, tool_name_prefix=True)


@pytest.mark.parametrize(
    ("connections", "pattern"),
    [
        ({}, r"connections must be a non-empty dict of server name -> connection, got \{\}"),
        ([("a", {})], r"connections must be a non-empty dict.*got \[\('a', \{\}\)\]"),
        ({"my server": {"transport": "stdio"}}, r"MCP server name 'my server' is not valid"),
        ({"a.b": {"transport": "stdio"}}, r"name 'a.b' is not valid.*'<server>.<tool>'"),
        ({"a": "http://x/mcp"}, r"connections\['a'\] must be a dict.*got 'http://x/mcp'"),
        ({"a": {"url": "http://x/mcp"}}, r"connections\['a'\] has transport None; use one of"),
        ({"a": {"transport": "pigeon"}}, r"has transport 'pigeon'; use one of \['sse', 'stdio'"),
        ({"a": {"transport": "stdio"}}, r"\(transport 'stdio'\) has no 'command'. Add the command"),
        ({"a": {"transport": "streamable_http"}}, r"has no 'url'. Add the server's URL"),
        (
            {"a": {"transport": "stdio", "command": "python", "args": "server.py"}},
            r"has 'args' 'server.py'; give the command's arguments as a list of strings",
        ),
    ],
    ids=[
        "empty",
        "list",
        "space",
        "dot",
        "str",
        "no-transport",
        "unknown",
        "no-command",
        "no-url",
        "args-str",
    ],
)
def test_bad_connections(connections: Any, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        load_mcp_tools(connections)


@pytest.mark.parametrize(
    ("options", "pattern"),
    [
        ({"timeout": 0}, r"timeout must be a positive number of seconds, got 0"),
        ({"timeout": "5"}, r"timeout must be a positive number of seconds, got '5'"),
        ({"framework": "haystack"}, r"framework must be 'langchain' or 'llama_index'"),
    ],
)
async def test_bad_options(options: dict[str, Any], pattern: str) -> None:
    connections = {"a": {"transport": "streamable_http", "url": "http://127.0.0.1:9/mcp"}}
    with pytest.raises(ValueError, match=pattern):
        await aload_mcp_tools(connections, **options)


def test_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "langchain_mcp_adapters.client", None)  # import fails
    with pytest.raises(ImportError) as err:
        load_mcp_tools({"a": {"transport": "stdio", "command": "x"}})
    assert "the 'mcp' extra of qta-integrations: pip install -e \".[mcp]\"" in str(err.value)


def test_a_large_catalogue_server_lists_every_tool() -> None:
    with HttpServer(build_server("crm", catalogue("crm"))) as server:
        assert len(load_mcp_tools({"crm": server.connection})) == 30
