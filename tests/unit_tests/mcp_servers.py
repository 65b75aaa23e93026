"""Small real MCP servers (FastMCP, the ``mcp`` SDK) for the tests, and how to run them.

* `catalogue` writes the 30 tools of one of three made-up servers (``weather``, ``crm``,
  ``files``) as specs: name, description, parameters with descriptions.
* `build_server` turns specs into a FastMCP server whose tools really run: each returns its
  name and arguments, so a test sees that the call reached the server.
* Run as a script (``python mcp_servers.py SPEC.json``), it serves a spec file on stdio; the
  file is read at every start, so editing it changes what the next session lists.
* `HttpServer` serves a FastMCP server over streamable HTTP on 127.0.0.1 (a free port) in a
  thread, waits until it accepts connections, and always stops it.

This file imports only the ``mcp`` SDK and the standard library: it runs as a subprocess.
"""

from __future__ import annotations

import inspect
import json
import socket
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

from mcp.server.fastmcp import FastMCP
from pydantic import Field

HERE = Path(__file__).resolve()

# Three servers x 10 nouns x 3 verbs = 90 tools, each with a distinct description.
_SERVERS: dict[str, tuple[list[str], dict[str, tuple[str, dict[str, str]]]]] = {
    "weather": (
        [
            "forecast",
            "humidity",
            "wind",
            "rainfall",
            "snowfall",
            "pollen",
            "uv_index",
            "sunrise",
            "tide",
            "storm",
        ],
        {
            "get": ("Get the current {noun} for a city.", {"city": "Name of the city"}),
            "compare": (
                "Compare the {noun} of two cities side by side.",
                {"first_city": "The first city", "second_city": "The second city"},
            ),
            "alert": (
                "Subscribe to an alert when the {noun} changes in a region.",
                {"region": "Region to watch", "threshold": "Level that triggers the alert"},
            ),
        },
    ),
    "crm": (
        [
            "contact",
            "deal",
            "lead",
            "invoice",
            "ticket",
            "meeting",
            "note",
            "task",
            "account",
            "campaign",
        ],
        {
            "create": ("Create a new customer {noun} record.", {"title": "Title of the {noun}"}),
            "find": (
                "Find a customer {noun} by keyword.",
                {"keyword": "Words to look for", "owner": "Sales rep who owns it"},
            ),
            "delete": ("Delete a customer {noun} permanently.", {"record_id": "Id to delete"}),
        },
    ),
    "files": (
        [
            "document",
            "folder",
            "archive",
            "photo",
            "spreadsheet",
            "pdf",
            "backup",
            "video",
            "slide_deck",
            "recording",
        ],
        {
            "upload": ("Upload a {noun} to cloud storage.", {"path": "Local path of the {noun}"}),
            "search": ("Search stored files for a {noun} by name.", {"query": "Name to search"}),
            "share": (
                "Share a stored {noun} with a colleague by email.",
                {"path": "Path of the {noun}", "email": "Colleague's email address"},
            ),
        },
    ),
}

SERVER_NAMES = list(_SERVERS)


def catalogue(server: str) -> list[dict[str, Any]]:
    """The 30 tool specs of ``server``: ``{"name", "description", "params": {name: text}}``."""
    nouns, verbs = _SERVERS[server]
    specs = []
    for noun in nouns:
        spoken = noun.replace("_", " ")
        for verb, (description, params) in verbs.items():
            specs.append(
                {
                    "name": f"{verb}_{noun}",
                    "description": description.format(noun=spoken),
                    "params": {p: d.format(noun=spoken) for p, d in params.items()},
                }
            )
    return specs


def tool_function(spec: Mapping[str, Any]) -> Any:
    """A function with the spec's keyword parameters (str, described) that echoes its call."""
    name = spec["name"]

    def call(**kwargs: str) -> str:
        return f"{name} called with {json.dumps(kwargs, sort_keys=True)}"

    params = [
        inspect.Parameter(
            p, inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[str, Field(description=d)]
        )
        for p, d in spec.get("params", {}).items()
    ]
    call.__signature__ = inspect.Signature(params, return_annotation=str)  # type: ignore[attr-defined]
    call.__name__ = name
    call.__doc__ = None  # the description comes from the spec alone (None: no description)
    return call


def add_tool(server: FastMCP, spec: Mapping[str, Any]) -> None:
    """Register one spec on a running or new server."""
    server.add_tool(tool_function(spec), name=spec["name"], description=spec.get("description"))


def build_server(name: str, specs: Sequence[Mapping[str, Any]]) -> FastMCP:
    """A FastMCP server with one tool per spec."""
    server = FastMCP(name, log_level="WARNING", stateless_http=True, json_response=True)
    for spec in specs:
        add_tool(server, spec)
    return server


def write_spec(path: Path, name: str, specs: Sequence[Mapping[str, Any]]) -> Path:
    """Write what `main` serves: ``{"server": name, "tools": specs}``."""
    path.write_text(json.dumps({"server": name, "tools": list(specs)}), encoding="utf-8")
    return path


def stdio_connection(spec_file: Path) -> dict[str, Any]:
    """The ``MultiServerMCPClient`` connection that starts this file on ``spec_file``."""
    return {"transport": "stdio", "command": sys.executable, "args": [str(HERE), str(spec_file)]}


class HttpServer:
    """Serve a FastMCP server over streamable HTTP on 127.0.0.1 in a background thread.

    The socket is bound before the server starts (port 0: the system picks a free port, no
    race), and `__enter__` returns only once the server accepts connections.
    """

    def __init__(self, server: FastMCP, *, ready_timeout: float = 30.0) -> None:
        import uvicorn

        self.mcp = server
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        config = uvicorn.Config(
            server.streamable_http_app(),
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )
        self._ready_timeout = ready_timeout

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    @property
    def connection(self) -> dict[str, Any]:
        return {"transport": "streamable_http", "url": self.url}

    def __enter__(self) -> HttpServer:
        self._thread.start()
        deadline = time.monotonic() + self._ready_timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.__exit__()
                msg = f"The test MCP server on port {self.port} did not start."
                raise RuntimeError(msg)
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(timeout=5)
        self._socket.close()


@contextmanager
def silent_port() -> Iterator[str]:
    """A URL on 127.0.0.1 that accepts TCP connections and never answers (a hung server)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/mcp"
    finally:
        sock.close()


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (a server that is down)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/mcp"


def main(argv: Sequence[str]) -> None:
    """Serve the spec file ``argv[0]`` on stdio."""
    spec = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    build_server(spec["server"], spec["tools"]).run("stdio")


if __name__ == "__main__":
    main(sys.argv[1:])
