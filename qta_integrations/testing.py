"""Test helpers that need no files and no network: a scripted rewriter and a tiny random LM.

Useful in this package's tests and in the tests of applications built on it.
"""

from __future__ import annotations

import hashlib
import math
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any

from langchain_core.embeddings import Embeddings

from qta_integrations.prompts import RewritePrompt, RewriteRequest
from qta_integrations.rewriter import HuggingFaceRewriter, QueryRewriter

__all__ = [
    "FakeRewriter",
    "KeywordEmbeddings",
    "tiny_causal_lm",
    "tiny_hf_rewriter",
    "tiny_tokenizer",
]

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


class KeywordEmbeddings(Embeddings):
    """Deterministic bag-of-words embeddings: shared words mean higher cosine similarity.

    Unlike LangChain's ``DeterministicFakeEmbedding`` (a random vector per text), similar texts
    get similar vectors, so retrieval tests can assert which tool wins.
    """

    queries_embed_as_documents = True
    """A query is embedded like a document (`qta_integrations.embeddings.embed_queries`)."""

    def __init__(self, size: int = 256) -> None:
        self.size = size

    @property
    def encoder_identity(self) -> dict[str, str]:
        """What an index records of this model: the same for every instance of a size.

        Subclasses keep it: a counting wrapper in a test embeds exactly as this class does.
        """
        return {
            "model": f"keyword-{self.size}",
            "backend": "KeywordEmbeddings",
            "precision": "fp32",
        }

    def _embed(self, text: str) -> list[float]:
        vector = [0.0] * self.size
        for word in re.findall(r"[a-z0-9]+", text.lower()):
            bucket = int(hashlib.md5(word.encode()).hexdigest(), 16) % self.size
            vector[bucket] += 1.0
        norm = math.sqrt(sum(v * v for v in vector)) or 1.0
        return [v / norm for v in vector]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed tool texts."""
        return [self._embed(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        """Embed a query."""
        return self._embed(text)


class FakeRewriter(QueryRewriter):
    """A deterministic rewriter: a mapping from query to rewrite, or a function of the query.

    Queries not in the mapping are returned unchanged (which the pipeline treats as "no rewrite").
    It records every query it was asked to rewrite in ``calls``.
    """

    def __init__(
        self,
        rewrites: Mapping[str, str] | Callable[[str], str] | None = None,
        *,
        prompt: RewritePrompt | None = None,
        cache_size: int = 1024,
    ) -> None:
        super().__init__(prompt=prompt, cache_size=cache_size)
        self.rewrites = rewrites or {}
        self.calls: list[str] = []
        self._rendered: dict[str, str] = {}  # last user turn -> its query, set by `render`
        self._rendered_lock = threading.Lock()

    def _rewrite_one(self, query: str) -> str:
        self.calls.append(query)
        if callable(self.rewrites):
            return self.rewrites(query)
        return self.rewrites.get(query, query)

    def render(self, request: RewriteRequest | str) -> list[dict[str, str]]:
        """Render as usual, remembering which query each prompt was rendered from."""
        messages = super().render(request)
        query = request.query if isinstance(request, RewriteRequest) else request
        with self._rendered_lock:
            self._rendered[messages[-1]["content"]] = query
            while len(self._rendered) > 4096:
                self._rendered.pop(next(iter(self._rendered)))
        return messages

    def _query_of(self, messages: list[dict[str, str]]) -> str:
        content = messages[-1]["content"]
        with self._rendered_lock:
            query = self._rendered.get(content)
        if query is not None:
            return query
        # Messages built elsewhere: the query is what follows the last "Request: " marker.
        return content.rpartition("Request: ")[2].rpartition("\nRewritten request:")[0]

    def _generate(self, messages: list[list[dict[str, str]]]) -> list[str]:
        return [self._rewrite_one(self._query_of(m)) for m in messages]


def tiny_tokenizer() -> Any:
    """A byte-level tokenizer built in memory (no files), with a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    specials = ["<|pad|>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]
    vocab = {tok: i for i, tok in enumerate(specials + sorted(alphabet))}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<|pad|>",
        eos_token="<|end|>",
        additional_special_tokens=specials[2:],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def tiny_causal_lm(vocab_size: int, *, seed: int = 0, max_positions: int = 2048) -> Any:
    """A randomly initialised 2-layer Llama (about 100k parameters), built from a config."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_positions,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=None,
        # Untied: with tied embeddings a random model only echoes the last prompt token (the
        # special <|assistant|> tag), so every rewrite would decode to "" and fall back.
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    model.eval()
    return model


def tiny_hf_rewriter(*, seed: int = 0, **kwargs: Any) -> HuggingFaceRewriter:
    """A `HuggingFaceRewriter` over `tiny_causal_lm` and `tiny_tokenizer`; builds in ms."""
    tokenizer = tiny_tokenizer()
    model = tiny_causal_lm(len(tokenizer), seed=seed)
    kwargs.setdefault("max_new_tokens", 8)
    kwargs.setdefault("name", "tiny-random-llama")
    return HuggingFaceRewriter(model, tokenizer, **kwargs)
