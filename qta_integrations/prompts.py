"""The rewrite prompt: one template shared by inference and training.

The paper conditions the rewriter on the user's query and a few tool documents, so that the
rewrite borrows the catalogue's vocabulary. Which tools go in is the retriever's choice
(by default the top ``num_context_tools`` for the original query, see `QTAPipeline`); this
module only lays them out. Training samples candidates with exactly this prompt, and the
adapter manifest records `PROMPT_VERSION` so a mismatch can be caught.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from qta_integrations.tools import Tool

__all__ = ["PROMPT_VERSION", "RewriteExample", "RewritePrompt", "RewriteRequest"]

PROMPT_VERSION = "qta-rewrite-v1"

DEFAULT_INSTRUCTION = (
    "You rewrite a user's request for a tool search engine. Describe, in the style of tool "
    "documentation, the actions and data the request needs (search, get details, list, "
    "convert, ...). Write one or two short sentences. Do not answer the request."
)


@dataclass(frozen=True)
class RewriteRequest:
    """What the rewriter sees for one query.

    Attributes:
        query: The user's query.
        context: Tool documents shown as examples of the catalogue's wording.
        history: Earlier user turns of the conversation, oldest first (for follow-ups).
    """

    query: str
    context: tuple[Tool, ...] = ()
    history: tuple[str, ...] = ()

    @property
    def cache_key(self) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
        """Identity of the request for the rewrite cache."""
        return (self.query, tuple(t.id for t in self.context), self.history)


@dataclass(frozen=True)
class RewriteExample:
    """A worked example (query and a good rewrite) shown before the real query."""

    query: str
    rewrite: str


@dataclass(frozen=True)
class RewritePrompt:
    """Lays a `RewriteRequest` out as chat messages.

    Attributes:
        instruction: The system message.
        examples: Optional few-shot examples, as earlier chat turns.
        max_tool_chars: Each context tool's text is cut to this many characters.
        max_history_turns: Only the most recent turns of history are shown.
        version: Recorded in adapter manifests; change it when the layout changes.
    """

    instruction: str = DEFAULT_INSTRUCTION
    examples: tuple[RewriteExample, ...] = field(default=())
    max_tool_chars: int = 200
    max_history_turns: int = 3
    version: str = PROMPT_VERSION

    def user_message(self, request: RewriteRequest) -> str:
        """The user turn for one request: context tools, conversation, then the request."""
        parts = []
        if request.context:
            lines = [f"- {_clip(t.text, self.max_tool_chars)}" for t in request.context]
            parts.append("Tool documentation looks like this:\n" + "\n".join(lines))
        history = request.history[-self.max_history_turns :] if self.max_history_turns else ()
        if history:
            parts.append(
                "Earlier in the conversation the user said:\n"
                + "\n".join(f"- {turn}" for turn in history)
            )
        parts.append(f"Request: {request.query}\nRewritten request:")
        return "\n\n".join(parts)

    def messages(self, request: RewriteRequest) -> list[dict[str, str]]:
        """Chat messages (``role`` / ``content``) for a chat template or a chat model."""
        messages = [{"role": "system", "content": self.instruction}]
        for example in self.examples:
            messages.append(
                {"role": "user", "content": self.user_message(RewriteRequest(example.query))}
            )
            messages.append({"role": "assistant", "content": example.rewrite})
        messages.append({"role": "user", "content": self.user_message(request)})
        return messages

    def with_examples(self, examples: Sequence[RewriteExample]) -> RewritePrompt:
        """A copy of this prompt with other few-shot examples."""
        return RewritePrompt(
            instruction=self.instruction,
            examples=tuple(examples),
            max_tool_chars=self.max_tool_chars,
            max_history_turns=self.max_history_turns,
            version=self.version,
        )


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."
