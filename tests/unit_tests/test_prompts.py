from __future__ import annotations

import pytest

from qta_integrations.prompts import (
    DEFAULT_INSTRUCTION,
    PROMPT_VERSION,
    RewriteExample,
    RewritePrompt,
    RewriteRequest,
)
from qta_integrations.tools import Tool

WEATHER = Tool(id="weather", name="get_weather", description="Current weather for a city.")
QUOTE = Tool(id="quote", name="get_quote", description="Latest price of a stock ticker.")


def test_messages_layout() -> None:
    prompt = RewritePrompt(examples=(RewriteExample("rain?", "Get the weather forecast."),))
    request = RewriteRequest("umbrella in Paris?", context=(WEATHER, QUOTE), history=("hi",))
    messages = prompt.messages(request)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[0]["content"] == DEFAULT_INSTRUCTION
    assert messages[1]["content"] == "Request: rain?\nRewritten request:"
    assert messages[2]["content"] == "Get the weather forecast."
    assert messages[3]["content"] == (
        "Tool documentation looks like this:\n"
        "- get_weather: Current weather for a city.\n"
        "- get_quote: Latest price of a stock ticker.\n\n"
        "Earlier in the conversation the user said:\n- hi\n\n"
        "Request: umbrella in Paris?\nRewritten request:"
    )


def test_bare_request_has_only_the_query() -> None:
    messages = RewritePrompt(instruction="Rewrite.").messages(RewriteRequest("q"))
    assert messages == [
        {"role": "system", "content": "Rewrite."},
        {"role": "user", "content": "Request: q\nRewritten request:"},
    ]


@pytest.mark.parametrize(
    ("description", "limit", "expected"),
    [
        ("short   text\n with  breaks", 40, "- t: short text with breaks"),
        ("x" * 40, 20, "- t: " + "x" * 14 + "..."),
        ("word " * 10, 20, "- t: word word word..."),
    ],
)
def test_context_tools_are_clipped(description: str, limit: int, expected: str) -> None:
    prompt = RewritePrompt(max_tool_chars=limit)
    tool = Tool(id="t", name="t", description=description)
    message = prompt.user_message(RewriteRequest("q", context=(tool,)))
    line = message.splitlines()[1]
    assert line == expected
    assert len(line) <= len("- ") + limit


@pytest.mark.parametrize(("max_turns", "shown"), [(3, ["2", "3", "4"]), (1, ["4"]), (0, [])])
def test_history_is_limited_to_the_latest_turns(max_turns: int, shown: list[str]) -> None:
    prompt = RewritePrompt(max_history_turns=max_turns)
    message = prompt.user_message(RewriteRequest("q", history=("1", "2", "3", "4")))
    turns = [line[2:] for line in message.splitlines() if line.startswith("- ")]
    assert turns == shown
    assert ("Earlier in the conversation" in message) == bool(shown)


def test_cache_key_tells_requests_apart() -> None:
    plain = RewriteRequest("q")
    keys = {
        plain.cache_key,
        RewriteRequest("q", context=(WEATHER,)).cache_key,
        RewriteRequest("q", history=("earlier",)).cache_key,
        RewriteRequest("other").cache_key,
    }
    assert len(keys) == 4
    assert RewriteRequest("q").cache_key == plain.cache_key


def test_with_examples_keeps_other_settings() -> None:
    prompt = RewritePrompt(instruction="I", max_tool_chars=50, max_history_turns=1, version="v9")
    examples = [RewriteExample("a", "b")]
    copy = prompt.with_examples(examples)
    assert copy.examples == tuple(examples)
    assert (copy.instruction, copy.max_tool_chars, copy.max_history_turns, copy.version) == (
        "I",
        50,
        1,
        "v9",
    )
    assert prompt.examples == ()
    assert RewritePrompt().version == PROMPT_VERSION
