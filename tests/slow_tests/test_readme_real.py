"""README.md's Python blocks with the real embedded models (MiniLM + SmolLM2-135M)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit_tests.test_docs_snippets import README, is_slow, run_page

PAGES = [README] if is_slow(README) else []


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES, ids=["README.md"] * len(PAGES))
def test_readme_with_real_models(page: Path, tmp_path: Path) -> None:
    assert not run_page(page, tmp_path)  # nothing in the README is skipped
