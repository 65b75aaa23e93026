"""Shared fixtures: offline settings, MTRB data location, deterministic fakes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from qta_integrations.testing import FakeRewriter, KeywordEmbeddings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parent.parent
MTRB_DIR = Path(os.environ.get("QTA_MTRB_DIR", REPO_ROOT.parent / "shared" / "data" / "mtrb"))

TOOLS = [
    {
        "id": "weather",
        "name": "get_weather",
        "description": "Current weather and forecast for a city.",
    },
    {
        "id": "stock_quote",
        "name": "get_stock_quote",
        "description": "Latest price of a stock ticker symbol.",
    },
    {"id": "route", "name": "plan_route", "description": "Driving directions between two places."},
    {
        "id": "translate",
        "name": "translate_text",
        "description": "Translate text into another language.",
    },
    {
        "id": "calendar",
        "name": "create_event",
        "description": "Create a calendar event at a date and time.",
    },
    {"id": "email", "name": "send_email", "description": "Send an email message to a recipient."},
]


@pytest.fixture
def tool_dicts() -> list[dict[str, str]]:
    return [dict(t) for t in TOOLS]


@pytest.fixture
def mtrb_dir() -> Path:
    if not MTRB_DIR.exists():
        pytest.fail(f"MTRB data not found at {MTRB_DIR}; set QTA_MTRB_DIR.")
    return MTRB_DIR


class CountingEmbeddings(KeywordEmbeddings):
    """KeywordEmbeddings that count how many texts were embedded as documents."""

    def __init__(self) -> None:
        super().__init__()
        self.documents_embedded = 0

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.documents_embedded += len(texts)
        return super().embed_documents(texts)


class CountingRewriter(FakeRewriter):
    """A FakeRewriter that counts its generate calls (one per batch of cache misses)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.generate_calls = 0

    def _generate(self, messages: list[list[dict[str, str]]]) -> list[str]:
        self.generate_calls += 1
        return super()._generate(messages)
