"""The ONNX encoder on a tiny BERT built from a config: export, cache, corruption, contract."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from qta_integrations import embeddings as embeddings_module
from qta_integrations.embeddings import default_embeddings, embed_queries
from qta_integrations.encoders import EncoderConfig, OnnxEmbeddings, encoder_identity
from qta_integrations.encoders import export as export_module
from qta_integrations.encoders.export import CorruptEncoderError, check_cached_model

WORDS = [
    *("weather", "forecast", "city", "stock", "price", "ticker", "route", "driving"),
    *("directions", "translate", "text", "language", "calendar", "event", "date", "time"),
    *("send", "email", "message", "recipient", "in", "paris", "the", "of", "a"),
]
TEXTS = [
    "weather forecast in paris",
    "stock price of a ticker",
    "driving directions",
    "translate the text into a language, then send an email message to the recipient",
]


def _tiny_bert_dir(path: Path) -> Path:
    """A 2-layer BERT of width 32 with a WordPiece tokenizer, saved like a real checkpoint."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    vocab = {tok: i for i, tok in enumerate(specials + sorted(set(WORDS)) + [",", "."])}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    path.mkdir(parents=True, exist_ok=True)
    BertModel(config).eval().save_pretrained(path)
    tokenizer.save(str(path / "tokenizer.json"))
    (path / "sentence_bert_config.json").write_text('{"max_seq_length": 16}')
    return path


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny_bert_dir(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("qta-cache")


@pytest.fixture(scope="module")
def tiny_fp32(tiny_bert: Path, tiny_cache: Path) -> OnnxEmbeddings:
    return OnnxEmbeddings.from_model_dir(tiny_bert, precision="fp32", cache=tiny_cache)


def _torch_reference(model_dir: Path, texts: list[str], max_length: int = 16) -> np.ndarray:
    """Mean pooling over the mask and L2 normalisation, in torch, one text at a time."""
    import torch
    from tokenizers import Tokenizer
    from transformers import BertModel

    model = BertModel.from_pretrained(str(model_dir)).eval()
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=max_length)
    rows = []
    with torch.no_grad():
        for text in texts:
            ids = torch.tensor([tokenizer.encode(text).ids])
            hidden = model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state
            pooled = hidden.mean(dim=1)[0]
            rows.append((pooled / pooled.norm()).numpy())
    return np.stack(rows)


# -- the embedding contract ------------------------------------------------------------------


def test_fp32_export_matches_the_torch_model(tiny_fp32: OnnxEmbeddings, tiny_bert: Path) -> None:
    vectors = np.asarray(tiny_fp32.embed_documents(TEXTS))
    reference = _torch_reference(tiny_bert, TEXTS)
    assert vectors.shape == (len(TEXTS), 32)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert (vectors * reference).sum(axis=1).min() > 0.9999


def test_a_batch_gives_each_text_its_own_vector(tiny_fp32: OnnxEmbeddings) -> None:
    # Padding to the longest text of a pass must not move the others (the mask is pooled).
    batched = np.asarray(tiny_fp32.embed_documents(TEXTS))
    alone = np.asarray([tiny_fp32.embed_query(t) for t in TEXTS])
    np.testing.assert_allclose(batched, alone, atol=1e-5)
    assert embed_queries(tiny_fp32, TEXTS) == tiny_fp32.embed_documents(TEXTS)


def test_long_texts_are_truncated_to_max_seq_length(tiny_fp32: OnnxEmbeddings) -> None:
    assert tiny_fp32.max_seq_length == 16  # from sentence_bert_config.json
    long_text = " ".join(["weather"] * 200)
    capped = " ".join(["weather"] * 14)  # CLS + 14 words + SEP = 16 tokens
    np.testing.assert_allclose(
        tiny_fp32.embed_query(long_text), tiny_fp32.embed_query(capped), atol=1e-6
    )


def test_empty_input_and_bad_items(tiny_fp32: OnnxEmbeddings) -> None:
    assert tiny_fp32.embed_documents([]) == []
    with pytest.raises(TypeError, match="item 1 is int"):
        tiny_fp32.embed_documents(["fine", 3])  # type: ignore[list-item]


async def test_async_paths_agree(tiny_fp32: OnnxEmbeddings) -> None:
    assert await tiny_fp32.aembed_query(TEXTS[0]) == tiny_fp32.embed_query(TEXTS[0])
    assert await tiny_fp32.aembed_documents(TEXTS) == tiny_fp32.embed_documents(TEXTS)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_size": 0}, "batch_size must be a positive int, got 0"),
        ({"num_threads": 0}, "num_threads must be a positive int or None, got 0"),
        ({"max_seq_length": 1}, "max_seq_length must be at least 2"),
    ],
)
def test_bad_arguments_name_the_value(
    tiny_fp32: OnnxEmbeddings, kwargs: dict[str, int], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        OnnxEmbeddings(
            onnx_path=tiny_fp32.onnx_path, tokenizer_path=tiny_fp32.tokenizer_path, **kwargs
        )


def test_thread_count_is_set_on_the_session(tiny_fp32: OnnxEmbeddings) -> None:
    two = OnnxEmbeddings(
        onnx_path=tiny_fp32.onnx_path,
        tokenizer_path=tiny_fp32.tokenizer_path,
        num_threads=2,
        max_seq_length=tiny_fp32.max_seq_length,
    )
    assert two._session.get_session_options().intra_op_num_threads == 2
    np.testing.assert_allclose(
        two.embed_documents(TEXTS), tiny_fp32.embed_documents(TEXTS), atol=1e-5
    )


def test_a_checkpoint_without_tokenizer_json_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"has no tokenizer\.json"):
        OnnxEmbeddings.from_model_dir(tmp_path, cache=tmp_path / "cache")


# -- the cache -------------------------------------------------------------------------------


def test_cache_round_trip_builds_once_and_logs_path_and_size(
    tiny_bert: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with caplog.at_level(logging.INFO, logger="qta_integrations.encoders.export"):
        first = OnnxEmbeddings.from_model_dir(tiny_bert, precision="int8", cache=tmp_path)
    built = [r.getMessage() for r in caplog.records if "Built the ONNX encoder" in r.getMessage()]
    assert len(built) == 1
    assert str(first.onnx_path) in built[0] and "MiB" in built[0]
    assert first.onnx_path.is_relative_to(tmp_path / "encoders")
    assert first.encoder_identity == {
        "model": tiny_bert.name,
        "backend": "onnxruntime",
        "precision": "int8",
    }
    check_cached_model(first.onnx_path)  # its sidecar agrees

    def no_build(*args: object, **kwargs: object) -> None:
        raise AssertionError("a cached encoder was built again")

    monkeypatch.setattr(export_module, "build_onnx_model", no_build)
    caplog.clear()
    again = OnnxEmbeddings.from_model_dir(tiny_bert, precision="int8", cache=tmp_path)
    assert again.onnx_path == first.onnx_path
    assert not caplog.records
    assert again.embed_documents(TEXTS) == first.embed_documents(TEXTS)
    int8 = np.asarray(first.embed_documents(TEXTS))
    np.testing.assert_allclose(np.linalg.norm(int8, axis=1), 1.0, atol=1e-5)


def test_fp32_and_int8_are_cached_apart(tiny_bert: Path, tiny_cache: Path) -> None:
    fp32 = export_module.onnx_model_path(tiny_bert, precision="fp32", name="m", cache=tiny_cache)
    int8 = export_module.onnx_model_path(tiny_bert, precision="int8", name="m", cache=tiny_cache)
    assert fp32.parent == int8.parent and fp32 != int8
    assert int8.stat().st_size < fp32.stat().st_size


def _corrupt_in_place(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, another hash
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_corrupt_in_place, "SHA-256 differs"),
        (lambda p: p.write_bytes(p.read_bytes()[:100]), "bytes where"),
        (lambda p: p.with_name(p.name + ".json").unlink(), "missing or unreadable"),
    ],
    ids=["flipped-byte", "truncated", "no-sidecar"],
)
def test_a_corrupt_cached_model_is_rebuilt_with_a_message(
    tiny_bert: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: object, reason: str
) -> None:
    good = OnnxEmbeddings.from_model_dir(tiny_bert, precision="fp32", cache=tmp_path)
    expected = good.embed_documents(TEXTS)
    damage(good.onnx_path)  # type: ignore[operator]
    with pytest.raises(CorruptEncoderError, match=reason):
        check_cached_model(good.onnx_path)
    with caplog.at_level(logging.INFO, logger="qta_integrations.encoders.export"):
        rebuilt = OnnxEmbeddings.from_model_dir(tiny_bert, precision="fp32", cache=tmp_path)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "is corrupt" in warnings[0].getMessage() and "rebuilding it" in warnings[0].getMessage()
    assert reason in warnings[0].getMessage()
    assert any("Built the ONNX encoder" in r.getMessage() for r in caplog.records)
    check_cached_model(rebuilt.onnx_path)
    np.testing.assert_allclose(rebuilt.embed_documents(TEXTS), expected, atol=1e-6)


def test_new_weights_get_a_fresh_export(tiny_bert: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in tiny_bert.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    before = export_module.encoder_cache_dir(copy, name="m", cache=tmp_path)
    (copy / "config.json").write_text((copy / "config.json").read_text() + "\n")
    assert export_module.encoder_cache_dir(copy, name="m", cache=tmp_path) != before


def test_unknown_precision_is_refused(tiny_bert: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="precision must be 'int8' or 'fp32', got 'int4'"):
        export_module.onnx_model_path(tiny_bert, precision="int4", cache=tmp_path)


# -- configuration and the default -----------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, EncoderConfig("onnx", "fp32", None)),
        ({"QTA_ENCODER": "torch"}, EncoderConfig("torch", "fp32", None)),
        ({"QTA_ENCODER": " ONNX ", "QTA_ENCODER_PRECISION": "int8"}, EncoderConfig("onnx", "int8")),
        ({"QTA_ENCODER_THREADS": "2"}, EncoderConfig(num_threads=2)),
    ],
)
def test_config_from_the_environment(environ: dict[str, str], expected: EncoderConfig) -> None:
    assert EncoderConfig.from_env(environ) == expected


@pytest.mark.parametrize(
    ("environ", "match"),
    [
        (
            {"QTA_ENCODER": "tensorflow"},
            "backend must be one of \\['onnx', 'torch'\\], got 'tensorflow'",
        ),
        ({"QTA_ENCODER_PRECISION": "int4"}, "precision must be one of .* got 'int4'"),
        (
            {"QTA_ENCODER_THREADS": "two"},
            "QTA_ENCODER_THREADS must be a positive integer, got 'two'",
        ),
        ({"QTA_ENCODER_THREADS": "0"}, "num_threads must be a positive int or None, got 0"),
    ],
)
def test_bad_config_names_the_variable(environ: dict[str, str], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        EncoderConfig.from_env(environ)


def test_overrides_win_over_the_environment() -> None:
    config = EncoderConfig.from_env({"QTA_ENCODER": "torch"}, backend="onnx", precision=None)
    assert config.backend == "onnx" and config.effective_precision == "fp32"
    assert EncoderConfig(backend="torch", precision="int8").effective_precision == "fp32"


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[tuple[object, ...]]:
    calls: list[tuple[object, ...]] = []
    monkeypatch.setattr(embeddings_module, "_default_embeddings", lambda *a: calls.append(a))
    for name in ("QTA_ENCODER", "QTA_ENCODER_PRECISION", "QTA_ENCODER_THREADS"):
        monkeypatch.delenv(name, raising=False)
    return calls


def test_default_embeddings_choose_onnx_fp32_and_honour_the_opt_out(
    built: list[tuple[object, ...]], monkeypatch: pytest.MonkeyPatch
) -> None:
    default_embeddings()
    default_embeddings(num_threads=3)
    monkeypatch.setenv("QTA_ENCODER", "torch")
    default_embeddings()
    default_embeddings(backend="onnx", precision="int8")
    assert built == [
        (32, "cpu", "onnx", "fp32", None),
        (32, "cpu", "onnx", "fp32", 3),
        (32, "cpu", "torch", "fp32", None),
        (32, "cpu", "onnx", "int8", None),
    ]


def test_another_device_uses_torch_and_onnx_refuses_it(built: list[tuple[object, ...]]) -> None:
    default_embeddings(device="cuda")
    assert built == [(32, "cuda", "torch", "fp32", None)]
    with pytest.raises(ValueError, match="runs on the CPU only, got device='cuda'"):
        default_embeddings(device="cuda", backend="onnx")


# -- identity --------------------------------------------------------------------------------


def test_encoder_identity_of_common_models(tiny_fp32: OnnxEmbeddings) -> None:
    from langchain_core.embeddings import DeterministicFakeEmbedding

    from qta_integrations.embeddings import to_llama_index_embeddings
    from qta_integrations.testing import KeywordEmbeddings

    onnx = {"model": tiny_fp32.name, "backend": "onnxruntime", "precision": "fp32"}
    assert encoder_identity(tiny_fp32) == onnx
    assert encoder_identity(to_llama_index_embeddings(tiny_fp32)) == onnx  # looked through
    assert encoder_identity(DeterministicFakeEmbedding(size=8)) == {
        "model": "DeterministicFakeEmbedding(size=8)",
        "backend": "langchain_core.embeddings.fake.DeterministicFakeEmbedding",
        "precision": "unknown",
    }
    assert encoder_identity(KeywordEmbeddings(size=8)) != encoder_identity(KeywordEmbeddings())

    class CacheBacked:  # the shape of LangChain's CacheBackedEmbeddings
        underlying_embeddings = tiny_fp32

    assert encoder_identity(CacheBacked()) == onnx


# -- one session, many callers ----------------------------------------------------------------


async def test_one_session_is_shared_by_concurrent_invoke_and_ainvoke(
    tiny_fp32: OnnxEmbeddings, tool_dicts: list[dict[str, str]]
) -> None:
    from qta_integrations import QTARetriever

    retriever = QTARetriever(tools=tool_dicts, embeddings=tiny_fp32, rewriter=None, k=3)
    queries = [f"{a} {b}" for a in TEXTS for b in ("today", "please", "now", "")] * 3
    expected = {q: [d.id for d in retriever.invoke(q)] for q in set(queries)}

    def invoke(query: str) -> list[str | None]:
        return [d.id for d in retriever.invoke(query)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        threaded = asyncio.gather(*(asyncio.to_thread(invoke, q) for q in queries))
        awaited = asyncio.gather(*(retriever.ainvoke(q) for q in queries))
        pooled = pool.map(invoke, queries)
        by_thread, by_task = await threaded, await awaited
        by_pool = list(pooled)
    assert by_thread == [expected[q] for q in queries]
    assert [[d.id for d in docs] for docs in by_task] == [expected[q] for q in queries]
    assert by_pool == [expected[q] for q in queries]
