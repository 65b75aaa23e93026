"""The ``>>>`` examples in the package's docstrings run and print what they claim."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import qta_integrations

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(qta_integrations.__path__, prefix="qta_integrations.")
)


def _modules_with_examples() -> list[str]:
    finder = doctest.DocTestFinder()
    return [
        name
        for name in MODULES
        if any(test.examples for test in finder.find(importlib.import_module(name)))
    ]


WITH_EXAMPLES = _modules_with_examples()


def test_some_modules_have_examples() -> None:
    assert "qta_integrations.ranking" in WITH_EXAMPLES
    assert "qta_integrations.training.pairs" in WITH_EXAMPLES


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
