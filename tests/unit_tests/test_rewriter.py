from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models import FakeListChatModel, GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig, RunnableLambda

from qta_integrations import models
from qta_integrations.prompts import RewritePrompt, RewriteRequest
from qta_integrations.rewriter import (
    HuggingFaceRewriter,
    QueryRewriter,
    RunnableRewriter,
    clean_rewrite,
    resolve_rewriter,
)
from qta_integrations.testing import FakeRewriter, tiny_hf_rewriter, tiny_tokenizer
from qta_integrations.tools import Tool

SHORT_PROMPT = RewritePrompt(instruction="Rewrite.")

# -- cleaning -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Get the weather forecast.", "Get the weather forecast."),
        ("Rewritten request: Get the weather.", "Get the weather."),
        ("rewritten query - Get the weather.", "Get the weather."),
        ("Answer: get quote", "get quote"),
        ('"Get the weather."', "Get the weather."),
        ("'Get the weather.'", "Get the weather."),
        ("`search flights`", "search flights"),
        ("- Search flights.\n* Book a hotel.", "Search flights. Book a hotel."),
        ("Search flights.\nsearch flights.\nBook a hotel.", "Search flights. Book a hotel."),
        ("  lots   of\t\tspace  ", "lots of space"),
        ("Get 3 quotes", "Get 3 quotes"),
    ],
)
def test_clean_rewrite_keeps_the_rewrite(raw: str, expected: str) -> None:
    assert clean_rewrite(raw) == (expected, None)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "no text"),
        ("   \n\n ", "no text"),
        ('Rewritten request: ""', "no text"),
        ("123 456 !!", "no words"),
        ("a 1 b 2 ?", "no words"),
        ("weather " * 12, "repeats itself"),
        ("get the weather " * 5, "repeats itself"),
    ],
)
def test_clean_rewrite_rejects_degenerate_output(raw: str, reason: str) -> None:
    text, problem = clean_rewrite(raw)
    assert text == ""
    assert problem is not None and reason in problem


def test_clean_rewrite_clips_at_a_word_boundary() -> None:
    text, problem = clean_rewrite("alpha beta gamma delta", max_chars=13)
    assert (text, problem) == ("alpha beta", None)
    assert clean_rewrite("abcdefghijkl", max_chars=5) == ("abcde", None)


# -- the shared QueryRewriter behaviour -------------------------------------------------------


class CountingRewriter(FakeRewriter):
    """A FakeRewriter that also counts model calls (one per batch)."""

    def __init__(self, *args: Any, delay: float = 0.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.generate_calls = 0
        self.delay = delay

    def _generate(self, messages: list[list[dict[str, str]]]) -> list[str]:
        self.generate_calls += 1
        time.sleep(self.delay)
        return super()._generate(messages)


def test_cache_hit_costs_no_generation() -> None:
    rewriter = CountingRewriter({"q": "rewrite"})
    assert rewriter.rewrite("q") == "rewrite"
    assert rewriter.rewrite("q") == "rewrite"
    assert rewriter.rewrite(RewriteRequest("q")) == "rewrite"
    assert rewriter.calls == ["q"]
    assert rewriter.generate_calls == 1
    rewriter.clear_cache()
    rewriter.rewrite("q")
    assert rewriter.calls == ["q", "q"]


def test_cache_is_keyed_by_context_and_history() -> None:
    rewriter = FakeRewriter({"q": "rewrite"})
    tool = Tool(id="t", name="t", description="A tool.")
    rewriter.rewrite_batch(
        [
            RewriteRequest("q"),
            RewriteRequest("q", context=(tool,)),
            RewriteRequest("q", history=("h",)),
        ]
    )
    assert rewriter.calls == ["q", "q", "q"]


def test_lru_cache_is_bounded_and_evicts_the_least_recently_used() -> None:
    rewriter = FakeRewriter(lambda q: f"{q} rewritten", cache_size=2)
    for query in ["a", "b", "a", "c"]:  # "a" was used again, so "b" is evicted by "c"
        assert rewriter.rewrite(query) == f"{query} rewritten"
    assert rewriter.calls == ["a", "b", "c"]
    rewriter.rewrite("a")
    rewriter.rewrite("b")
    assert rewriter.calls == ["a", "b", "c", "b"]
    assert len(rewriter._cache) == 2


def test_cache_size_zero_disables_the_cache() -> None:
    rewriter = FakeRewriter({"q": "rewrite"}, cache_size=0)
    assert [rewriter.rewrite("q"), rewriter.rewrite("q")] == ["rewrite", "rewrite"]
    assert rewriter.calls == ["q", "q"]
    assert len(rewriter._cache) == 0


def test_negative_cache_size_is_rejected() -> None:
    with pytest.raises(ValueError, match="cache_size must be >= 0, got -1"):
        FakeRewriter(cache_size=-1)


def test_batch_generates_each_distinct_miss_once_in_one_call() -> None:
    rewriter = CountingRewriter(lambda q: f"{q} rewritten")
    rewriter.rewrite("cached")
    out = rewriter.rewrite_batch(["a", "b", "a", "cached"])
    assert out == ["a rewritten", "b rewritten", "a rewritten", "cached rewritten"]
    assert rewriter.calls == ["cached", "a", "b"]
    assert rewriter.generate_calls == 2


def test_degenerate_output_falls_back_and_logs_why(caplog: pytest.LogCaptureFixture) -> None:
    rewriter = FakeRewriter({"will it rain?": "!!! ???", "umbrella?": ""})
    with caplog.at_level(logging.INFO, logger="qta_integrations.rewriter"):
        assert rewriter.rewrite("will it rain?") == "will it rain?"
        assert rewriter.rewrite("umbrella?") == "umbrella?"
    messages = [r.getMessage() for r in caplog.records]
    assert any("'will it rain?' fell back" in m and "no words" in m for m in messages)
    assert any("'umbrella?' fell back" in m and "no text" in m for m in messages)


def test_wrong_number_of_outputs_is_an_error() -> None:
    class Broken(QueryRewriter):
        def _generate(self, messages: list[list[dict[str, str]]]) -> list[str]:
            return []

    with pytest.raises(RuntimeError, match="returned 0 outputs for 1 prompts"):
        Broken().rewrite("q")


async def test_arewrite_does_not_block_the_event_loop() -> None:
    rewriter = CountingRewriter({"q": "rewrite"}, delay=0.5)
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0.01)

    task = asyncio.create_task(ticker())
    assert await rewriter.arewrite("q") == "rewrite"
    done.set()
    await task
    # A blocking call would freeze the ticker for the whole 0.5 s; off the loop it keeps going.
    assert ticks >= 10
    assert await rewriter.arewrite_batch(["q", "q"]) == ["rewrite", "rewrite"]
    assert rewriter.generate_calls == 1


# -- RunnableRewriter -------------------------------------------------------------------------


class RecordingRunnable:
    """A RunnableLambda with separate sync and async functions, recording which one ran."""

    def __init__(self, reply: str = "Get the weather forecast.") -> None:
        self.sync_inputs: list[list[BaseMessage]] = []
        self.async_inputs: list[list[BaseMessage]] = []
        self.configs: list[RunnableConfig] = []
        self.reply = reply

        def sync(messages: list[BaseMessage], config: RunnableConfig) -> AIMessage:
            self.sync_inputs.append(messages)
            self.configs.append(config)
            return AIMessage(self.reply)

        async def async_(messages: list[BaseMessage], config: RunnableConfig) -> AIMessage:
            self.async_inputs.append(messages)
            self.configs.append(config)
            await asyncio.sleep(0)
            return AIMessage(self.reply)

        self.runnable = RunnableLambda(sync, afunc=async_)


def test_runnable_rewriter_with_chat_models() -> None:
    model = FakeListChatModel(responses=["Rewritten request: Get the weather forecast."])
    assert RunnableRewriter(model).rewrite("rain?") == "Get the weather forecast."
    generic = GenericFakeChatModel(messages=iter([AIMessage("Latest stock price.")]))
    assert RunnableRewriter(generic).rewrite("AAPL?") == "Latest stock price."


def test_runnable_rewriter_sends_the_prompt_as_chat_messages() -> None:
    recorder = RecordingRunnable()
    rewriter = RunnableRewriter(recorder.runnable, prompt=SHORT_PROMPT, max_concurrency=2)
    tool = Tool(id="w", name="get_weather", description="Weather for a city.")
    assert rewriter.rewrite(RewriteRequest("rain?", context=(tool,))) == recorder.reply
    (messages,) = recorder.sync_inputs
    assert isinstance(messages[0], SystemMessage) and messages[0].content == "Rewrite."
    assert isinstance(messages[1], HumanMessage)
    assert "- get_weather: Weather for a city." in messages[1].content
    assert str(messages[1].content).endswith("Request: rain?\nRewritten request:")
    assert recorder.configs[0]["max_concurrency"] == 2


def test_runnable_rewriter_reads_content_blocks_and_strings() -> None:
    blocks = RunnableLambda(lambda _: AIMessage([{"type": "text", "text": "Get "}, "weather"]))
    assert RunnableRewriter(blocks).rewrite("q") == "Get weather"
    plain = RunnableLambda(lambda _: "Search flights.")
    assert RunnableRewriter(plain).rewrite("q") == "Search flights."


async def test_runnable_rewriter_async_uses_the_runnables_async_path() -> None:
    recorder = RecordingRunnable()
    rewriter = RunnableRewriter(recorder.runnable)
    assert await rewriter.arewrite("a") == recorder.reply
    assert await rewriter.arewrite_batch(["b", "c", "a"]) == [recorder.reply] * 3
    assert len(recorder.async_inputs) == 3  # a, then b and c in one abatch; a is cached
    assert recorder.sync_inputs == []


async def test_runnable_rewriter_async_with_a_chat_model() -> None:
    model = FakeListChatModel(responses=["Search flights.", "Book a hotel."])
    rewriter = RunnableRewriter(model)
    assert await rewriter.arewrite_batch(["fly", "sleep"]) == ["Search flights.", "Book a hotel."]


# -- HuggingFaceRewriter (tiny random model) ------------------------------------------------


def test_hf_batched_generation_equals_one_by_one() -> None:
    rewriter = tiny_hf_rewriter(batch_size=4)
    # Different lengths, so the batch is left-padded.
    prompts = ["abc", "hello world, what's up", "x", "translate hello into french please"]
    batched = rewriter.generate_from_prompts(prompts)
    rewriter.batch_size = 1
    assert rewriter.generate_from_prompts(prompts) == batched
    assert len({outs[0] for outs in batched}) > 1  # the prompts really lead to different outputs
    queries = ["will it rain in Paris?", "AAPL price", "translate 'hello' into French"]
    together = tiny_hf_rewriter(batch_size=3, prompt=SHORT_PROMPT).rewrite_batch(queries)
    alone = tiny_hf_rewriter(batch_size=1, prompt=SHORT_PROMPT)
    assert [alone.rewrite(q) for q in queries] == together


def test_hf_very_long_query_is_truncated(caplog: pytest.LogCaptureFixture) -> None:
    rewriter = tiny_hf_rewriter(max_query_tokens=64, prompt=SHORT_PROMPT)
    query = " ".join(f"word{i}" for i in range(10_000))
    cut = rewriter.truncate_query(query)
    assert len(rewriter.tokenizer(cut, add_special_tokens=False)["input_ids"]) <= 64
    assert query.startswith(cut)
    with caplog.at_level(logging.INFO, logger="qta_integrations.rewriter"):
        out = rewriter.rewrite(query)
    assert isinstance(out, str) and out
    assert "Query truncated from" in caplog.text


def test_hf_over_long_prompt_keeps_its_end(monkeypatch: pytest.MonkeyPatch) -> None:
    rewriter = tiny_hf_rewriter(prompt=SHORT_PROMPT)
    seen: list[Any] = []
    original = rewriter.model.generate

    def spy(**kwargs: Any) -> Any:
        seen.append(kwargs["input_ids"])
        return original(**kwargs)

    monkeypatch.setattr(rewriter.model, "generate", spy)
    history = tuple(" ".join(["earlier"] * 2_000) for _ in range(3))  # far over the context
    rewriter.rewrite(RewriteRequest("rain?", history=history))
    (input_ids,) = seen
    assert input_ids.shape[1] <= rewriter._max_prompt_tokens()
    tail = rewriter.tokenizer.decode(input_ids[0, -40:])
    assert tail.endswith("Request: rain?\nRewritten request:<|end|><|assistant|>")


async def test_hf_async_rewrite_equals_sync() -> None:
    queries = ["will it rain?", "AAPL price"]
    sync = tiny_hf_rewriter(prompt=SHORT_PROMPT).rewrite_batch(queries)
    assert await tiny_hf_rewriter(prompt=SHORT_PROMPT).arewrite_batch(queries) == sync


def test_hf_sample_returns_the_requested_number_of_candidates() -> None:
    import torch

    torch.manual_seed(0)
    samples = tiny_hf_rewriter(prompt=SHORT_PROMPT).sample("rain?", num_samples=3)
    assert len(samples) == 3
    assert all(isinstance(s, str) and s for s in samples)


def test_hf_sample_batch_gives_one_list_per_request_and_matches_sample() -> None:
    import torch

    rewriter = tiny_hf_rewriter(prompt=SHORT_PROMPT)
    torch.manual_seed(0)
    batch = rewriter.sample_batch(["rain?", "AAPL price"], num_samples=2, max_new_tokens=4)
    assert [len(group) for group in batch] == [2, 2]
    assert all(isinstance(s, str) and s for group in batch for s in group)
    torch.manual_seed(1)
    one = rewriter.sample("rain?", num_samples=2)
    torch.manual_seed(1)
    assert rewriter.sample_batch(["rain?"], num_samples=2) == [one]


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"max_new_tokens": 0}, "max_new_tokens must be >= 1, got 0"),
        ({"batch_size": -1}, "batch_size must be >= 1, got -1"),
        ({"max_query_tokens": 0}, "max_query_tokens must be >= 1, got 0"),
    ],
)
def test_hf_rejects_bad_settings(kwargs: dict[str, int], pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        tiny_hf_rewriter(**kwargs)


def test_hf_needs_a_chat_template() -> None:
    tokenizer = tiny_tokenizer()
    tokenizer.chat_template = None
    with pytest.raises(ValueError, match="no chat template"):
        HuggingFaceRewriter(tiny_hf_rewriter().model, tokenizer)


def test_hf_from_pretrained_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_conversion(**_: Any) -> Path:
        raise AssertionError("loading a model directory must not convert the default model")

    monkeypatch.setattr(models, "default_rewriter_path", no_conversion)
    original = tiny_hf_rewriter(prompt=SHORT_PROMPT)
    original.model.save_pretrained(tmp_path)
    original.tokenizer.save_pretrained(tmp_path)
    loaded = HuggingFaceRewriter.from_pretrained(tmp_path, prompt=SHORT_PROMPT, max_new_tokens=8)
    assert loaded.source == str(tmp_path.resolve())
    assert loaded.name == str(tmp_path)
    assert original.source is None
    assert loaded.rewrite_batch(["rain?", "AAPL"]) == original.rewrite_batch(["rain?", "AAPL"])
    assert isinstance(resolve_rewriter(tmp_path), HuggingFaceRewriter)
    with pytest.raises(FileNotFoundError, match="No model or adapter"):
        HuggingFaceRewriter.from_pretrained(tmp_path / "missing")


# -- resolve_rewriter -------------------------------------------------------------------------


def test_resolve_rewriter() -> None:
    fake = FakeRewriter()
    assert resolve_rewriter(None) is None
    assert resolve_rewriter(fake) is fake
    model = FakeListChatModel(responses=["x"])
    wrapped = resolve_rewriter(model)
    assert isinstance(wrapped, RunnableRewriter) and wrapped.runnable is model
    with pytest.raises(TypeError, match="Unsupported rewriter int"):
        resolve_rewriter(3)
    with pytest.raises(FileNotFoundError, match="No adapter or model directory"):
        resolve_rewriter("/nonexistent/adapter")
