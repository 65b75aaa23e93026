"""Every ```python block in README.md and docs/ runs, page by page, top to bottom, in one
namespace per page. A block may ``await`` at top level (it is run in its own event loop).

Conventions (an HTML comment on the line before a block, invisible in the rendered site):

* ``<!-- skip: REASON -->``: the block is not run (it needs a server, the network or a GPU). The
  reason is required, skipped blocks are reported as warnings in the test output, and there may
  be at most ``MAX_SKIPPED`` of them.
* ``<!-- slow: REASON -->``: the block needs the real embedded models. A page with such a block is
  run by ``tests/slow_tests/test_agents_real.py::test_docs_page_with_real_models`` (docs/) or
  ``tests/slow_tests/test_readme_real.py`` (README.md) instead.
* ``<!-- server: REASON -->``: the block needs a Chroma server on ``127.0.0.1:8000``. Elsewhere
  it is not run; ``tests/slow_tests/test_chroma_server.py`` starts a server and runs the page
  with these blocks, pointed at the server's port.

A top-level ``print(...)  # expected`` line is checked: when every ``print`` of a block is such a
line, the block's output must be exactly those expected values, in order.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import inspect
import io
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
MAX_SKIPPED = 2  # deployment.md: a vLLM server, a CUDA GPU
SERVER_PORT = "port=8000"
"""How a server block names the Chroma server's port (replaced by the test server's)."""

_FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)
_MARKER = re.compile(r"<!--\s*(skip|slow|server)\s*:\s*(.*?)\s*-->\s*$")
_PRINT = re.compile(r"^print\(.*\)\s*#\s*(.+?)\s*$")


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    code: str
    marker: str | None = None
    reason: str = ""

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def blocks(page: Path) -> list[Block]:
    text = page.read_text(encoding="utf-8")
    found = []
    for match in _FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").splitlines()
        marker = _MARKER.search(before[-1]) if before else None
        found.append(
            Block(
                page=page.relative_to(ROOT).as_posix(),
                line=text.count("\n", 0, match.start()) + 1,
                code=match.group(1),
                marker=marker.group(1) if marker else None,
                reason=marker.group(2) if marker else "",
            )
        )
    return found


def pages() -> list[Path]:
    return sorted(
        p for p in DOCS.rglob("*.md") if any(True for _ in _FENCE.finditer(p.read_text()))
    )


def is_slow(page: Path) -> bool:
    return any(b.marker == "slow" for b in blocks(page))


def expected_output(code: str) -> list[str] | None:
    prints = [line for line in code.splitlines() if re.match(r"^\s*print\(", line)]
    expected = [m.group(1) for line in prints if (m := _PRINT.match(line))]
    return expected if prints and len(expected) == len(prints) else None


def run_block(block: Block, namespace: dict[str, object]) -> None:
    """Execute one block; a top-level ``await`` runs the block as a coroutine in a new loop."""
    code = compile(
        block.code, block.where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True
    )
    result = eval(code, namespace)
    if inspect.iscoroutine(result):
        asyncio.run(result)


def run_page(page: Path, tmp_path: Path, *, server_port: int | None = None) -> list[Block]:
    """Run a page's blocks in order; return the skipped ones. Fails naming the block that broke.

    Server blocks run only with ``server_port`` (a Chroma server listening there).
    """
    namespace: dict[str, object] = {"__name__": f"docs_{page.stem}"}
    skipped = []
    cwd = os.getcwd()
    os.chdir(tmp_path)  # blocks that write files write them here
    try:
        for block in blocks(page):
            assert block.marker is None or block.reason, f"{block.where}: say why it is marked"
            if block.marker == "skip" or (block.marker == "server" and server_port is None):
                skipped.append(block)
                continue
            if block.marker == "server":
                code = block.code.replace(SERVER_PORT, f"port={server_port}")
                block = Block(block.page, block.line, code, block.marker, block.reason)
            out = io.StringIO()
            try:
                with contextlib.redirect_stdout(out):
                    run_block(block, namespace)
            except Exception as err:
                pytest.fail(f"{block.where} raised {type(err).__name__}: {err}")
            expected = expected_output(block.code)
            printed = out.getvalue().splitlines()
            if expected is not None:
                assert printed == expected, (
                    f"{block.where} printed {printed}, the page says {expected}"
                )
    finally:
        os.chdir(cwd)
    for block in skipped:
        warnings.warn(f"{block.where} not run: {block.reason}", UserWarning, stacklevel=1)
    return skipped


FAST_PAGES = [p for p in [README, *pages()] if not is_slow(p)]


@pytest.mark.parametrize(
    "page", FAST_PAGES, ids=[p.relative_to(ROOT).as_posix() for p in FAST_PAGES]
)
def test_docs_page(page: Path, tmp_path: Path) -> None:
    run_page(page, tmp_path)


def server_pages() -> list[Path]:
    """The pages with blocks that need a Chroma server."""
    return [p for p in [README, *pages()] if any(b.marker == "server" for b in blocks(p))]


def test_skipped_blocks_are_few_and_explained() -> None:
    skipped = [b for p in pages() for b in blocks(p) if b.marker == "skip"]
    for block in skipped:
        assert len(block.reason) > 10, f"{block.where}: say why the block is not run"
    assert len(skipped) <= MAX_SKIPPED, [b.where for b in skipped]
    print("\n".join(f"not run: {b.where} ({b.reason})" for b in skipped))


def test_readme_blocks_are_all_run() -> None:
    # Run here, or (a page with a slow block) by tests/slow_tests/test_readme_real.py.
    found = blocks(README)
    assert len(found) >= 2
    assert not [b.where for b in found if b.marker == "skip"]


@pytest.mark.parametrize(
    "code",
    ["import asyncio\nawait asyncio.sleep(0)\nprint('ran')  # ran", "print('ran')  # ran"],
)
def test_blocks_may_await_at_top_level(code: str) -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        run_block(Block(page="x.md", line=1, code=code), {})
    assert out.getvalue() == "ran\n"


def test_every_page_is_checked() -> None:
    assert (DOCS / "index.md").exists()
    assert len(pages()) >= 4
    # Every python block is either run here, run by the slow test, or explicitly skipped.
    slow = [p for p in pages() if is_slow(p)]
    assert set(FAST_PAGES) | set(slow) == set(pages())


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("print(1)  # 1\nprint('a')  # a", ["1", "a"]),
        ("x = 1\nprint(x)", None),
        ("for i in range(2):\n    print(i)  # 0", None),
        ("y = 2", None),
    ],
)
def test_expected_output_parsing(code: str, expected: list[str] | None) -> None:
    assert expected_output(code) == expected


NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def test_notebooks_are_committed_executed_with_a_plot() -> None:
    """Notebooks show their results on a code host: every code cell ran, in order, and each
    notebook holds at least one figure. Their outputs name no path outside the repository."""
    import json

    notebooks = sorted(NOTEBOOKS.glob("*.ipynb"))
    assert len(notebooks) >= 4
    for path in notebooks:
        cells = [c for c in json.loads(path.read_text(encoding="utf-8"))["cells"]]
        code = [c for c in cells if c["cell_type"] == "code"]
        counts = [c.get("execution_count") for c in code]
        assert all(isinstance(n, int) for n in counts), f"{path.name}: unexecuted cells"
        assert counts == sorted(counts), f"{path.name}: cells ran out of order: {counts}"
        outputs = [o for c in code for o in c.get("outputs", [])]
        assert not [o for o in outputs if o.get("output_type") == "error"], path.name
        assert any("image/png" in o.get("data", {}) for o in outputs), f"{path.name}: no plot"
        text = json.dumps(outputs)
        assert "/work/" not in text and "shared/data" not in text, f"{path.name}: a local path"
