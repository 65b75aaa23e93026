"""Tools from MCP servers: every tool of every server, through ``langchain-mcp-adapters``.

An agent connected to a few MCP servers sees hundreds of tools; this source lists them all
(``MultiServerMCPClient``, one listing per server, concurrently) and turns each into a `Tool`
whose ``obj`` calls the server:

* the id is ``"<server>.<tool>"`` (``"weather.get_forecast"``): stable across restarts, and
  unique even when two servers name a tool alike;
* the name (what the model is bound to and calls) is the server's own tool name, or
  ``"<server>_<tool>"`` with ``tool_name_prefix=True``; two servers with a tool of the same
  name are refused without it, because a model cannot be bound two tools of one name;
* the input schema's parameter names and descriptions are indexed after the description
  (`Tool.parameters`); ``metadata`` holds ``mcp_server`` and ``mcp_tool``.

`aload_mcp_tools` is the one core; `load_mcp_tools` runs it from synchronous code, and the
retrievers' ``from_mcp`` / ``afrom_mcp`` constructors call them. To re-sync after a server's
tools changed, list again and pass the tools to ``update_catalog`` (`QTAPipeline.update_catalog`).

Install the extra first: ``pip install -e ".[mcp]"`` (``langchain-mcp-adapters`` and ``mcp``).

Example:
    .. code-block:: python

        from qta_integrations import QTARetriever
        from qta_integrations.sources.mcp import aload_mcp_tools

        connections = {
            "weather": {"transport": "stdio", "command": "python", "args": ["weather_server.py"]},
            "crm": {"transport": "streamable_http", "url": "http://127.0.0.1:8000/mcp"},
        }
        retriever = await QTARetriever.afrom_mcp(connections, k=5)
        docs = await retriever.ainvoke("forecast for Oslo")
        print(docs[0].id)  # weather.get_forecast

        result = retriever.update_catalog(await aload_mcp_tools(connections))  # re-sync
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import io
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from qta_integrations.sources.base import Tool
from qta_integrations.validation import describe

if TYPE_CHECKING:
    from langchain_core.tools import BaseTool

__all__ = [
    "DEFAULT_TIMEOUT",
    "ID_SEPARATOR",
    "MCPConnections",
    "aload_mcp_tools",
    "load_mcp_tools",
]

DEFAULT_TIMEOUT = 30.0
"""Seconds a server has to list its tools before `aload_mcp_tools` gives up on it."""

ID_SEPARATOR = "."
"""Between the server name and the tool name in a tool id: ``"weather.get_forecast"``."""

MCPConnections = Mapping[str, Mapping[str, Any]]
"""Server name -> connection, as ``MultiServerMCPClient`` takes them:
``{"transport": "stdio", "command": ..., "args": [...]}`` or
``{"transport": "streamable_http", "url": ...}`` (also ``"sse"``, ``"websocket"``)."""

Framework = Literal["langchain", "llama_index"]

_SERVER_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_NEEDS = {
    "stdio": "command",
    "sse": "url",
    "streamable_http": "url",
    "streamable-http": "url",
    "http": "url",
    "websocket": "url",
}
_EXTRA = 'pip install -e ".[mcp]"'


async def aload_mcp_tools(
    connections: MCPConnections,
    *,
    tool_name_prefix: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    framework: Framework = "langchain",
) -> list[Tool]:
    """List the tools of every MCP server in ``connections`` as `Tool` records.

    Every server is listed concurrently, each in a session of its own (as
    ``MultiServerMCPClient.get_tools`` does); a tool call later opens a new session, so the
    tools outlive this call and its event loop.

    Args:
        connections: Server name -> connection (see `MCPConnections`). Server names are
            letters, digits, ``_`` and ``-``: they become part of the tool ids.
        tool_name_prefix: Bind each tool as ``"<server>_<tool>"`` instead of its own name
            (needed when two servers have a tool of the same name).
        timeout: Seconds each server has to list its tools.
        framework: What each ``Tool.obj`` is: a LangChain ``BaseTool`` (``"langchain"``, async:
            call it with ``ainvoke``) or a LlamaIndex ``FunctionTool`` (``"llama_index"``).

    Returns:
        The tools, server by server in the order of ``connections``, each server's in its
        listing order.

    Raises:
        ImportError: if the ``mcp`` extra is not installed.
        ValueError: for malformed connections, a tool without a description, an input schema
            that is not a JSON Schema object, or two servers with a tool of the same name
            (without ``tool_name_prefix``).
        ConnectionError: if a server cannot be reached or started (naming it, its URL or
            command, and what to check).
        TimeoutError: if a server does not list its tools within ``timeout`` seconds.
    """
    client_class = _client_class()
    _check_connections(connections)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        msg = f"timeout must be a positive number of seconds, got {describe(timeout)}."
        raise ValueError(msg)
    if framework not in ("langchain", "llama_index"):
        msg = f"framework must be 'langchain' or 'llama_index', got {framework!r}."
        raise ValueError(msg)
    # A stdio server may take no arguments; the adapters insist on an 'args' list.
    client = client_class(
        {
            name: {"args": [], **c} if c["transport"] == "stdio" else dict(c)
            for name, c in connections.items()
        },
        tool_name_prefix=tool_name_prefix,
    )
    listings = await asyncio.gather(
        *(_list_server(client, name, connections[name], timeout) for name in connections),
        return_exceptions=True,
    )
    failures = [r for r in listings if isinstance(r, BaseException)]
    if failures:
        raise _combined(failures)
    tools = [
        _tool(server, listed, tool_name_prefix)
        for server, server_tools in zip(connections, listings, strict=True)
        for listed in server_tools  # type: ignore[union-attr]
    ]
    _check_names(tools, tool_name_prefix)
    if framework == "llama_index":
        from qta_integrations.sources.llama_index import llama_index_tool_from_langchain

        tools = [dataclasses.replace(t, obj=llama_index_tool_from_langchain(t.obj)) for t in tools]
    return tools


def load_mcp_tools(
    connections: MCPConnections,
    *,
    tool_name_prefix: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    framework: Framework = "langchain",
) -> list[Tool]:
    """`aload_mcp_tools` from synchronous code (in a worker thread when a loop is running).

    In async code (a notebook, a server), prefer ``await aload_mcp_tools(...)``: this call
    blocks its caller until every server has answered. It raises what `aload_mcp_tools`
    raises.
    """
    options: dict[str, Any] = {
        "tool_name_prefix": tool_name_prefix,
        "timeout": timeout,
        "framework": framework,
    }
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(aload_mcp_tools(connections, **options))
    # asyncio.run refuses to nest in a running loop (Jupyter): run it in a thread of its own.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, aload_mcp_tools(connections, **options)).result()


# -- listing ------------------------------------------------------------------------------


def _client_class() -> Any:
    try:
        from langchain_mcp_adapters.client import MultiServerMCPClient
    except ImportError as err:
        msg = (
            "MCP tool catalogues need langchain-mcp-adapters and the mcp SDK, the 'mcp' extra of "
            f"qta-integrations: {_EXTRA} (or pip install langchain-mcp-adapters mcp)."
        )
        raise ImportError(msg) from err
    return MultiServerMCPClient


def _check_connections(connections: Any) -> None:
    if not isinstance(connections, Mapping) or not connections:
        msg = (
            f"connections must be a non-empty dict of server name -> connection, got "
            f"{describe(connections)}. Example: {{'weather': {{'transport': 'stdio', "
            "'command': 'python', 'args': ['weather_server.py']}}."
        )
        raise ValueError(msg)
    for name, connection in connections.items():
        if not isinstance(name, str) or not _SERVER_NAME.match(name):
            msg = (
                f"MCP server name {describe(name)} is not valid. Server names become part of the "
                "tool ids ('<server>.<tool>') and, with tool_name_prefix=True, of the names bound "
                "to the model: use letters, digits, '_' and '-' (e.g. 'weather')."
            )
            raise ValueError(msg)
        if not isinstance(connection, Mapping):
            msg = (
                f"connections[{name!r}] must be a dict such as {{'transport': "
                f"'streamable_http', 'url': ...}}, got {describe(connection)}."
            )
            raise ValueError(msg)
        transport = connection.get("transport")
        needed = _NEEDS.get(transport) if isinstance(transport, str) else None
        if needed is None:
            msg = (
                f"connections[{name!r}] has transport {describe(transport)}; use one of "
                f"{sorted(set(_NEEDS) - {'http', 'streamable-http'})}."
            )
            raise ValueError(msg)
        args = connection.get("args", [])
        if transport == "stdio" and (
            isinstance(args, (str, bytes)) or not isinstance(args, Sequence)
        ):
            msg = (
                f"connections[{name!r}] has 'args' {describe(args)}; give the command's "
                'arguments as a list of strings, e.g. ["server.py", "--port", "0"].'
            )
            raise ValueError(msg)
        if not connection.get(needed):
            msg = f"connections[{name!r}] (transport {transport!r}) has no {needed!r}. Add the " + (
                "command that starts the server." if needed == "command" else "server's URL."
            )
            raise ValueError(msg)


def _where(connection: Mapping[str, Any]) -> str:
    """How an error names a connection: its transport and URL, or its command line."""
    transport = connection["transport"]
    if transport == "stdio":
        args = connection.get("args") or []
        command = " ".join(str(a) for a in [connection["command"], *args])
        return f"stdio, command {command!r}"
    return f"{transport}, {connection['url']}"


def _root(err: BaseException) -> BaseException:
    """The first leaf of nested exception groups (anyio wraps transport errors in them)."""
    while isinstance(getattr(err, "exceptions", None), Sequence) and err.exceptions:  # type: ignore[attr-defined]
        err = err.exceptions[0]  # type: ignore[attr-defined]
    return err


async def _list_server(
    client: Any, name: str, connection: Mapping[str, Any], timeout: float
) -> list[BaseTool]:
    where = _where(connection)
    try:
        return list(await asyncio.wait_for(client.get_tools(server_name=name), timeout))
    except (asyncio.TimeoutError, TimeoutError):
        msg = (
            f"MCP server {name!r} ({where}) did not list its tools within {timeout:g} s. Check "
            "that it is running and speaks MCP at that address, or allow it more time "
            "(timeout=...)."
        )
        raise TimeoutError(msg) from None
    except Exception as err:
        cause = _root(err)
        if connection["transport"] == "stdio" and isinstance(cause, io.UnsupportedOperation):
            fix = (
                "The MCP client sends a stdio server's log to sys.stderr, which here has no file "
                "descriptor (as in a notebook kernel run by pytest, or a captured console): run "
                "with a real stderr, or serve the server over streamable HTTP."
            )
        elif connection["transport"] == "stdio":
            fix = (
                "Check that the command exists and starts an MCP server on stdio: run it in a "
                f"terminal to see its errors, or fix 'command'/'args' in connections[{name!r}]."
            )
        else:
            fix = (
                "Check that the server is running and listening at that URL (streamable HTTP "
                f"servers usually serve /mcp), or fix 'url' in connections[{name!r}]."
            )
        msg = (
            f"Could not list the tools of MCP server {name!r} ({where}): "
            f"{type(cause).__name__}: {cause}. {fix}"
        )
        raise ConnectionError(msg) from err


def _combined(failures: list[BaseException]) -> BaseException:
    """One error for the servers that failed: the error itself when one did."""
    for failure in failures:  # errors that are no connection problem come through as they are
        if not isinstance(failure, (ConnectionError, TimeoutError)):
            return failure
    if len(failures) == 1:
        return failures[0]
    lines = "\n".join(f"- {f}" for f in failures)
    return ConnectionError(f"{len(failures)} MCP servers could not be listed:\n{lines}")


# -- tools --------------------------------------------------------------------------------


def _tool(server: str, listed: BaseTool, prefixed: bool) -> Tool:
    from qta_integrations.sources.langchain import tool_from_langchain

    # With tool_name_prefix the adapter binds "<server>_<tool>"; the id keeps the MCP name.
    mcp_name = listed.name[len(server) + 1 :] if prefixed else listed.name
    where = f"MCP server {server!r} tool {mcp_name!r}"
    if not (listed.description or "").strip():
        msg = (
            f"{where} has no description. Retrieval matches tools by what they do: add a "
            "description on the server (for a FastMCP tool, a docstring or "
            "@mcp.tool(description=...)), or leave the server out of connections."
        )
        raise ValueError(msg)
    return tool_from_langchain(
        listed,
        tool_id=f"{server}{ID_SEPARATOR}{mcp_name}",
        metadata={"mcp_server": server, "mcp_tool": mcp_name},
        source=where,
    )


def _check_names(tools: list[Tool], prefixed: bool) -> None:
    """The names bound to a model must be unique across servers."""
    by_name: dict[str, list[Tool]] = {}
    for tool in tools:
        by_name.setdefault(tool.name, []).append(tool)
    clashes = {name: found for name, found in by_name.items() if len(found) > 1}
    if not clashes:
        return
    name, found = next(iter(clashes.items()))
    servers = " and ".join(repr(t.metadata["mcp_server"]) for t in found)
    ids = ", ".join(repr(t.id) for t in found)
    if prefixed:
        fix = "Rename one of the tools (or one of the servers) so that the prefixed names differ."
    else:
        renamed = ", ".join(
            repr(f"{t.metadata['mcp_server']}_{t.metadata['mcp_tool']}") for t in found
        )
        fix = (
            "Pass tool_name_prefix=True to bind every MCP tool as '<server>_<tool>' "
            f"({renamed}), or rename one of the tools on its server."
        )
    msg = (
        f"MCP servers {servers} each have a tool named {name!r} ({len(clashes)} name(s) clash in "
        f"all). Their ids differ ({ids}), but a model calls tools by name, and two tools bound "
        f"to it cannot share one. {fix}"
    )
    raise ValueError(msg)
