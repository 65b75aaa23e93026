"""QTAToolSelectorMiddleware on MTRB: tool-schema tokens per turn, S@k, and selection latency.

The catalogue is an MTRB subset (default ToolBench, 811 tools) behind the default retriever
(all-MiniLM-L6-v2 in embedded Chroma, no rewriter, top ``--max-tools``). Each tool becomes a
LangChain tool named after its id (characters an LLM API refuses replaced by ``_``) with its
MTRB description; MTRB ships no parameter schemas, so each takes one string ``request``.

For every test query, a real ``langchain.agents.create_agent`` runs one turn with a stand-in
chat model that records the tools it is bound to:

- without middleware: the model is sent all the tools;
- with ``QTAToolSelectorMiddleware(max_tools=...)``: the selected tools only.

Tokens: the OpenAI-style JSON schema of each tool sent (``convert_to_openai_tool``, as JSON),
counted with the all-MiniLM-L6-v2 WordPiece tokenizer shipped with the package (a proxy: a
chat model's own tokenizer counts differently, the ratio much less so), with characters too.
For reference, the input of ``LLMToolSelectorMiddleware``'s selection call (its own code, run
with a stand-in model that records the schema and messages it is given) is counted the same
way: that call is made on every model call, before the main model sees any tool.

S@k: the share of queries whose gold tools are all among the tools sent, against the
retriever's own ``invoke`` (top ``k``).

Latency: per query, in alternation, ``retriever.invoke(query)`` and the middleware's
``wrap_model_call`` on a fresh turn (a new message id, so nothing is cached; the handler
returns at once): the selection plus the request override; then the same with ``ainvoke`` and
``awrap_model_call``. First turns (the MTRB query alone) and second turns (the previous test
query, then this one: the conversation-aware context search runs as well) are timed
separately, the second also with ``context_turns=0`` (the last turn searched alone). The ratio
of medians is the figure to compare.

Command (from the repository root; about three minutes on 2 CPU cores, mostly the timed
passes)::

    QTA_MTRB_DIR=path/to/mtrb python benchmarks/middleware.py --threads 1 \
        --output benchmarks/results/middleware.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import re
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import _setup  # noqa: F401  (sets the offline environment; import before the package)


def _tool_name(tool_id: str, taken: set[str]) -> str:
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", tool_id).strip("_")[:60] or "tool"
    base, n = name, 1
    while name in taken:
        n += 1
        name = f"{base[:56]}_{n}"
    taken.add(name)
    return name


def _langchain_tools(catalog: Any) -> dict[str, Any]:
    """{tool id: LangChain tool} for an MTRB catalogue."""
    from langchain_core.tools import StructuredTool

    taken: set[str] = set()
    tools = {}
    for entry in catalog:

        def run(request: str, _id: str = entry.id) -> str:
            """Call the API."""
            return f"{_id}: {request}"

        tools[entry.id] = StructuredTool.from_function(
            run,
            name=_tool_name(entry.id, taken),
            description=entry.description,
        )
    return tools


class _Counter:
    """Tokens (all-MiniLM-L6-v2's tokenizer) and characters of JSON texts."""

    def __init__(self) -> None:
        from transformers import AutoTokenizer

        from qta_integrations.embeddings import default_embedding_model_path

        self.tokenizer = AutoTokenizer.from_pretrained(default_embedding_model_path())
        self.tokenizer.model_max_length = 10**9  # counting only: no truncation warning

    def tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def schemas(self, tools: list[Any]) -> tuple[int, int]:
        from langchain_core.utils.function_calling import convert_to_openai_tool

        texts = [json.dumps(convert_to_openai_tool(t)) for t in tools]
        return sum(self.tokens(t) for t in texts), sum(len(t) for t in texts)


def _recording_model() -> Any:
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from pydantic import Field

    class Recording(GenericFakeChatModel):
        bound: list[list[Any]] = Field(default_factory=list)

        def bind_tools(self, tools: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            self.bound.append(list(tools))
            return self

    return Recording(messages=iter(["ok"] * 100_000))


def _llm_selector_input(tools: list[Any], query: str, counter: _Counter) -> dict[str, int]:
    """What LLMToolSelectorMiddleware sends its selection model for one model call."""
    from langchain.agents.middleware import LLMToolSelectorMiddleware, ModelRequest, ModelResponse
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage, HumanMessage
    from langchain_core.runnables import RunnableLambda

    seen: dict[str, Any] = {}

    class SelectionModel(GenericFakeChatModel):
        def with_structured_output(self, schema: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            seen["schema"] = schema

            def answer(messages: list[Any]) -> dict[str, Any]:
                seen["messages"] = messages
                return {"tools": [tools[0].name]}

            return RunnableLambda(answer)

    selector = LLMToolSelectorMiddleware(model=SelectionModel(messages=iter([])), max_tools=5)
    request = ModelRequest(
        model=_recording_model(), messages=[HumanMessage(query)], tools=list(tools)
    )
    selector.wrap_model_call(request, lambda r: ModelResponse(result=[AIMessage("ok")]))
    system = seen["messages"][0]["content"]
    user = seen["messages"][1].text
    schema = json.dumps(seen["schema"])
    return {
        "tokens": counter.tokens(schema) + counter.tokens(system) + counter.tokens(user),
        "chars": len(schema) + len(system) + len(user),
    }


def _median_ms(seconds: list[float]) -> float:
    return 1000 * statistics.median(seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--subset", default="toolbench", choices=["restbench", "metatool", "toolbench"]
    )
    parser.add_argument("--max-tools", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3, help="Timed passes over the queries.")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (1: steadier).")
    parser.add_argument("--data-dir", type=Path, default=None, help="MTRB dir ($QTA_MTRB_DIR).")
    parser.add_argument("--output", type=Path, help="Also write the numbers as JSON here.")
    args = parser.parse_args(argv)

    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    from langchain.agents import create_agent
    from langchain.agents.middleware import ModelRequest, ModelResponse
    from langchain_core.messages import AIMessage, HumanMessage

    from qta_integrations import QTARetriever
    from qta_integrations.agents import QTAToolSelectorMiddleware
    from qta_integrations.evaluation import load_mtrb

    data = load_mtrb(args.subset, "test", args.data_dir)
    start = time.perf_counter()
    retriever = QTARetriever(tools=data.catalog, rewriter=None, k=args.max_tools)
    index_seconds = time.perf_counter() - start
    tools = _langchain_tools(data.catalog)
    ids_by_name = {t.name: tool_id for tool_id, t in tools.items()}
    all_tools = list(tools.values())
    middleware = QTAToolSelectorMiddleware(
        retriever=retriever, tools=tools, max_tools=args.max_tools
    )
    counter = _Counter()
    queries = [q.query for q in data.queries]
    golds = [set(q.tool_ids) for q in data.queries]
    print(f"{data!r}; indexed in {index_seconds:.1f} s; torch threads {torch.get_num_threads()}")

    # -- tokens and S@k, through a real create_agent -------------------------------------
    plain_model, qta_model = _recording_model(), _recording_model()
    plain = create_agent(plain_model, all_tools)
    with_qta = create_agent(qta_model, all_tools, middleware=[middleware])
    plain.invoke({"messages": [("user", queries[0])]})
    all_tokens, all_chars = counter.schemas(plain_model.bound[0])
    assert len(plain_model.bound[0]) == len(all_tools)
    sent_tokens, sent_chars, sent_counts, found, retriever_found = [], [], [], [], []
    for query, gold in zip(queries, golds, strict=True):
        with_qta.invoke({"messages": [("user", query)]})
        sent = qta_model.bound[-1]
        tokens, chars = counter.schemas(sent)
        sent_tokens.append(tokens)
        sent_chars.append(chars)
        sent_counts.append(len(sent))
        found.append(gold <= {ids_by_name[t.name] for t in sent})
        retriever_found.append(gold <= {d.id for d in retriever.invoke(query)})
    llm_selector = _llm_selector_input(all_tools, queries[0], counter)
    tokens_report = {
        "tokenizer": "all-MiniLM-L6-v2 WordPiece; JSON of convert_to_openai_tool per tool",
        "all_tools": {"tools": len(all_tools), "tokens": all_tokens, "chars": all_chars},
        "selected": {
            "mean_tools": statistics.fmean(sent_counts),
            "max_tools": max(sent_counts),
            "mean_tokens": statistics.fmean(sent_tokens),
            "max_tokens": max(sent_tokens),
            "mean_chars": statistics.fmean(sent_chars),
        },
        "reduction_percent": 100 * (1 - statistics.fmean(sent_tokens) / all_tokens),
        "llm_tool_selector_call_input": llm_selector,
    }
    success = {
        "k": args.max_tools,
        "middleware_S_percent": 100 * statistics.fmean(found),
        "retriever_S_percent": 100 * statistics.fmean(retriever_found),
        "same_per_query": found == retriever_found,
    }

    # -- latency: the middleware's selection against the retriever's own invoke -----------
    def answer(request: Any) -> Any:
        return ModelResponse(result=[AIMessage("ok")])

    last_turn_only = QTAToolSelectorMiddleware(
        retriever=retriever, tools=tools, max_tools=args.max_tools, context_turns=0
    )

    def selection(messages: list[Any], chosen: Any = middleware) -> float:
        request = ModelRequest(model=qta_model, messages=messages, tools=list(all_tools))
        begin = time.perf_counter()
        chosen.wrap_model_call(request, answer)
        return time.perf_counter() - begin

    def invoke(query: str) -> float:
        begin = time.perf_counter()
        retriever.invoke(query)
        return time.perf_counter() - begin

    def human(text: str) -> Any:
        return HumanMessage(text, id=str(uuid.uuid4()))  # a new turn: never cached

    for query in queries[:5]:  # warm-up
        invoke(query)
        selection([human(query)])
    first_invoke, first_select, second_invoke, second_select, second_last = [], [], [], [], []
    for _ in range(args.repeats):
        for i, query in enumerate(queries):
            previous = queries[i - 1]
            first_invoke.append(invoke(query))
            first_select.append(selection([human(query)]))
            second_select.append(selection([human(previous), AIMessage("ok"), human(query)]))
            second_last.append(
                selection([human(previous), AIMessage("ok"), human(query)], last_turn_only)
            )
            second_invoke.append(invoke(query))

    async def aanswer(request: Any) -> Any:
        return ModelResponse(result=[AIMessage("ok")])

    async def aselection(messages: list[Any]) -> float:
        request = ModelRequest(model=qta_model, messages=messages, tools=list(all_tools))
        begin = time.perf_counter()
        await middleware.awrap_model_call(request, aanswer)
        return time.perf_counter() - begin

    async def ainvoke(query: str) -> float:
        begin = time.perf_counter()
        await retriever.ainvoke(query)
        return time.perf_counter() - begin

    async def atimes() -> tuple[list[float], ...]:
        for query in queries[:5]:  # warm-up
            await ainvoke(query)
            await aselection([human(query)])
        times: tuple[list[float], ...] = ([], [], [], [])
        for _ in range(args.repeats):
            for i, query in enumerate(queries):
                previous = queries[i - 1]
                times[0].append(await ainvoke(query))
                times[1].append(await aselection([human(query)]))
                times[3].append(await aselection([human(previous), AIMessage("ok"), human(query)]))
                times[2].append(await ainvoke(query))
        return times

    def row(invoked: list[float], selected: list[float]) -> dict[str, float]:
        return {
            "retriever_invoke_median_ms": _median_ms(invoked),
            "middleware_selection_median_ms": _median_ms(selected),
            "ratio_of_medians": statistics.median(selected) / statistics.median(invoked),
        }

    async_first_invoke, async_first_select, async_second_invoke, async_second_select = asyncio.run(
        atimes()
    )
    latency = {
        "repeats": args.repeats,
        "first_turn": row(first_invoke, first_select),
        "second_turn": row(second_invoke, second_select),
        "second_turn_context_turns_0": row(second_invoke, second_last),
        "async_first_turn": row(async_first_invoke, async_first_select),
        "async_second_turn": row(async_second_invoke, async_second_select),
    }
    report = {
        "catalogue": repr(data),
        "max_tools": args.max_tools,
        "index_seconds": index_seconds,
        "torch_threads": torch.get_num_threads(),
        "machine": f"{platform.processor() or platform.machine()}, {platform.python_version()}",
        "tokens": tokens_report,
        "success": success,
        "latency": latency,
    }
    sel = tokens_report["selected"]
    print(
        f"schema tokens per turn: all {all_tokens} ({len(all_tools)} tools), selected "
        f"{sel['mean_tokens']:.0f} (mean of {sel['mean_tools']:.1f} tools): "
        f"-{tokens_report['reduction_percent']:.2f}%"
    )
    print(f"LLMToolSelectorMiddleware's selection call input: {llm_selector['tokens']} tokens")
    print(
        f"S@{args.max_tools}: middleware {success['middleware_S_percent']:.2f}%, retriever "
        f"{success['retriever_S_percent']:.2f}%, same per query: {success['same_per_query']}"
    )
    for turn in latency:
        if turn == "repeats":
            continue
        row = latency[turn]
        print(
            f"{turn}: invoke {row['retriever_invoke_median_ms']:.2f} ms, selection "
            f"{row['middleware_selection_median_ms']:.2f} ms, x{row['ratio_of_medians']:.2f}"
        )
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        command = ["python", "benchmarks/middleware.py", *(argv or sys.argv[1:])]
        args.output.write_text(json.dumps({"command": command, **report}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
