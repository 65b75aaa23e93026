"""The open signal list: a signal registered from outside is fitted, saved, loaded and used."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

import qta_integrations.fusion as fusion_module
from qta_integrations import QTAPipeline, ToolCatalog
from qta_integrations.fusion import FusionWeights, fit_weights
from qta_integrations.settings import RetrievalSettings
from qta_integrations.signals import (
    Signal,
    SignalContext,
    SignalResources,
    SignalScores,
    register_signal,
    registered_signals,
    signal_spec,
    unregister_signal,
)
from qta_integrations.stores import ExactToolIndex
from qta_integrations.testing import KeywordEmbeddings

from ..conftest import TOOLS

ALIASES = {"french": "translate", "meeting": "calendar", "mail": "email"}


class AliasSignal(Signal):
    """A toy signal: a word of the query names a tool through a fixed alias table."""

    name = "alias"
    grid = (0.0, 1.0, 3.0)

    def __init__(self, resources: SignalResources) -> None:
        self.catalog = resources.catalog

    def scores(self, context: SignalContext) -> list[SignalScores]:
        known = set(self.catalog().ids)
        out = []
        for query in context.queries:
            words = re.findall(r"[a-z]+", query.lower())
            hits = {ALIASES[w]: 1.0 for w in words if w in ALIASES and ALIASES[w] in known}
            out.append(SignalScores(hits, 0.0))
        return out


EXAMPLES: list[dict[str, Any]] = [
    {"query": "say this in french", "tools": ["translate"]},
    {"query": "book a meeting", "tools": ["calendar"]},
    {"query": "mail my boss", "tools": ["email"]},
]


@pytest.fixture
def alias_signal() -> Iterator[type[AliasSignal]]:
    register_signal(AliasSignal, build=AliasSignal)
    try:
        yield AliasSignal
    finally:
        if "alias" in registered_signals():
            unregister_signal("alias")


def _pipeline() -> QTAPipeline:
    catalog = ToolCatalog.from_dicts([dict(t) for t in TOOLS])
    return QTAPipeline(catalog, ExactToolIndex(KeywordEmbeddings()), None)


def test_a_signal_registered_from_outside_is_fitted_saved_loaded_and_used(
    alias_signal: type[AliasSignal], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Three examples are too few to move a label-free weight past the default shrinkage.
    monkeypatch.setattr(fusion_module, "FREE_SHRINKAGE", 0.0)
    assert registered_signals()["alias"].cls is alias_signal
    pipeline = _pipeline()
    pipeline.add_examples(EXAMPLES)
    fitted = pipeline.fusion
    assert fitted.weight("alias") > 0  # fitted: the alias table explains every example
    saved = pipeline.state_dict()
    assert saved["settings"]["fusion"]["weights"]["alias"] == fitted.weight("alias")  # saved

    restored = _pipeline()
    restored.load_state_dict(saved)  # loaded
    assert restored.fusion == fitted
    result = restored.retrieve("french please", k=2)  # used
    assert result.tool_ids[0] == "translate"
    assert result.tools[0].signals["alias"] == 1.0


def test_a_signal_registered_after_the_pipeline_was_built_is_built_on_first_use(
    alias_signal: type[AliasSignal],
) -> None:
    unregister_signal("alias")
    pipeline = _pipeline()
    assert "alias" not in pipeline.signals
    register_signal(alias_signal, build=alias_signal)
    pipeline.settings = pipeline.settings.replace(fusion=FusionWeights(alias=3.0))
    assert pipeline.retrieve("a meeting", k=1).tool_ids == ["calendar"]
    assert isinstance(pipeline.signals["alias"], AliasSignal)


def test_saved_weights_for_an_unregistered_signal_are_an_error_that_names_it(
    alias_signal: type[AliasSignal],
) -> None:
    saved = RetrievalSettings(fusion=FusionWeights(alias=1.0)).to_dict()
    unregister_signal("alias")
    with pytest.raises(ValueError, match=r"Unknown signal\(s\) \['alias'\] in saved fusion"):
        RetrievalSettings.from_dict(saved)
    with pytest.raises(ValueError, match=r"Unknown signal\(s\) \['alias'\]"):
        FusionWeights(alias=1.0)
    with pytest.raises(KeyError, match="No signal named 'alias'"):
        FusionWeights().weight("alias")
    with pytest.raises(AttributeError, match="alias"):
        _ = FusionWeights().alias


def test_the_fit_reads_each_signals_grid_and_label_flag(alias_signal: type[AliasSignal]) -> None:
    spec = signal_spec("alias")
    assert spec.grid == (0.0, 1.0, 3.0) and not spec.uses_labels
    assert signal_spec("memory").uses_labels and signal_spec("rewrite").needs_rewrite
    dense = SignalScores({"a": 1.0, "b": 0.0}, 0.0)
    alias = SignalScores({"b": 1.0}, 0.0)
    fit = fit_weights([{"dense": dense, "alias": alias}], [["b"]], shrinkage=(0.0, 0.0))
    assert fit.weights.weight("alias") == 3.0  # the smallest grid weight that puts b first
    assert fit.tried == len(spec.grid)


def test_registration_errors_name_the_problem(alias_signal: type[AliasSignal]) -> None:
    class Other(Signal):
        name = "alias"

        def scores(self, context: SignalContext) -> list[SignalScores]:
            return []

    with pytest.raises(ValueError, match="'alias' is already registered"):
        register_signal(Other)
    with pytest.raises(TypeError, match="takes a Signal subclass"):
        register_signal(dict)  # type: ignore[type-var]

    class Nameless(Signal):
        name = "not a name"

        def scores(self, context: SignalContext) -> list[SignalScores]:
            return []

    with pytest.raises(ValueError, match="must be an identifier-like string"):
        register_signal(Nameless)
    with pytest.raises(KeyError, match="No signal named 'nope'"):
        unregister_signal("nope")


def test_weights_are_a_mapping_keyed_by_signal_name() -> None:
    weights = FusionWeights({"lexical": 0.5}, memory=1.0)
    assert weights.weights == {"dense": 1.0, "lexical": 0.5, "memory": 1.0}
    assert weights.lexical == 0.5 and weights.prior == 0.0
    assert weights == FusionWeights(lexical=0.5, memory=1.0, prior=0.0)
    assert weights.replace(memory=0.0) == FusionWeights(lexical=0.5)
    assert FusionWeights.from_dict(weights.to_dict()) == weights
    assert hash(weights) == hash(FusionWeights(memory=1.0, lexical=0.5))
    with pytest.raises(AttributeError, match="immutable"):
        weights.normalize = False  # type: ignore[misc]
    with pytest.raises(TypeError, match="mapping of signal name"):
        FusionWeights([("lexical", 0.5)])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("version", "fusion", "expected"),
    [
        # Versions 1 and 2: "lexical" read texts extended with the labels.
        (1, {"dense": 1.0, "lexical": 0.5}, FusionWeights(labelled_lexical=0.5)),
        (2, {"lexical": 0.3, "memory": 1.0}, FusionWeights(labelled_lexical=0.3, memory=1.0)),
        # Version 3: flat, one field per signal.
        (
            3,
            {"dense": 1.0, "lexical": 0.2, "labelled_lexical": 0.0, "normalize": True},
            FusionWeights(lexical=0.2),
        ),
        (3, {"dense": 0.5, "rewrite": 0.5, "normalize": False}, FusionWeights.paper()),
        # Version 4: keyed by signal name.
        (4, {"weights": {"dense": 1.0, "prior": 2.5}, "normalize": True}, FusionWeights(prior=2.5)),
    ],
)
def test_settings_of_every_version_load(
    version: int, fusion: dict[str, Any], expected: FusionWeights
) -> None:
    settings = RetrievalSettings.from_dict({"version": version, "k": 4, "fusion": fusion})
    assert settings.fusion == expected and settings.k == 4
