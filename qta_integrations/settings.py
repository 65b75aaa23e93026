"""`RetrievalSettings`: the one home of every retrieval parameter.

The pipeline, the LangChain and LlamaIndex retrievers, the LangGraph selector, the trainer, the
CLI and the benchmarks all take (or build) one frozen `RetrievalSettings`; nothing restates its
defaults. The fusion weights and the tool selection (`qta_integrations.selection`) live here too:
fitting them on labelled examples (`QTAPipeline.fit_fusion`) returns new settings, and persisting
a retriever writes them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from qta_integrations.fusion import FusionWeights
from qta_integrations.selection import ToolSelection
from qta_integrations.validation import check_fetch_k, check_positive_int

__all__ = ["SETTINGS_VERSION", "RetrievalSettings"]

SETTINGS_VERSION = 4
"""Version 4 keys the fusion weights by signal name (``{"weights": {...}, "normalize": ...}``,
any registered signal; see `qta_integrations.signals.register_signal`), may gate the label
signals (``label_gate``), records the label-free ``base`` a fit starts from, and defaults to
the zero-label base (dense plus BM25; before, a missing ``fusion`` meant dense only). Version
3 split BM25 into ``lexical`` (the tools' own texts) and ``labelled_lexical`` (texts extended
with labelled queries: what version 1 and 2 called ``lexical``, renamed on reading) and added
``label_fit``; version 2 added ``selection``. Older dicts still load."""
_READABLE_VERSIONS = (1, 2, 3, 4)
LABEL_FITS = ("safe", "labelled")
DEFAULT_FETCH_DEPTH = 500
"""Candidates per signal when ``fetch_k`` is unset. The dense scores are standardised over the
candidates fetched, so the deeper the fetch, the closer they come to a standardisation over
the whole catalogue, which is what the zero-label base was chosen with (docs/benchmarks.md:
S@5 averaged over five catalogues 55.02 at 100 candidates, 55.59 at 200, 56.03 at 500)."""


@dataclass(frozen=True)
class RetrievalSettings:
    """How a query is turned into a ranked list of tools.

    Attributes:
        k: Number of tools returned by default.
        fetch_k: Candidates fetched per signal before fusion; None for ``max(4 * k, 500)``.
        num_context_tools: Top tools for the query shown to the rewriter as wording examples.
        fusion: Weights of the signals (dense, BM25, example memory, rewrite); see
            `qta_integrations.fusion`. The default is the zero-label base
            (`FusionWeights.base`): dense plus BM25.
        base: The label-free weights a fit on labels starts from and holds to; None: those of
            ``fusion`` (its label signals dropped), recorded here by the first fit.
        selection: Which of the ranked tools are returned: a fixed top ``k`` (the default), a
            score cut-off, tools always included; see `qta_integrations.selection`.
        label_shrinkage: How strongly a fit holds the label weights to 0 (None: the default,
            `qta_integrations.fusion.LABEL_SHRINKAGE`); lower for labels you trust.
        label_fit: How `QTAPipeline.fit_fusion` weighs what the labels teach: ``"safe"`` (the
            default) never trades held-out queries about unlabelled tools for labelled ones;
            ``"labelled"`` maximises held-out labelled queries alone.

    Example:
        .. code-block:: python

            from qta_integrations.settings import RetrievalSettings

            settings = RetrievalSettings(k=3)
            print(settings.fetch_depth(3))  # 500
    """

    k: int = field(default=5, metadata={"help": "Number of tools returned by default."})
    fetch_k: int | None = field(
        default=None,
        metadata={"help": "Candidates fetched per signal before fusion (None: max(4k, 500))."},
    )
    num_context_tools: int = field(
        default=3, metadata={"help": "Tools shown to the rewriter as examples of the wording."}
    )
    fusion: FusionWeights = field(
        default_factory=FusionWeights.base,
        metadata={"help": "Weights of the signals in the fused score."},
    )
    base: FusionWeights | None = field(
        default=None,
        metadata={
            "help": (
                "The label-free weights a fit on labels starts from and holds to (None: "
                "those of fusion)."
            )
        },
    )
    selection: ToolSelection = field(
        default_factory=ToolSelection,
        metadata={"help": "Top k, a score cut-off, and tools always included."},
    )
    label_shrinkage: float | None = field(
        default=None,
        metadata={
            "help": (
                "How strongly a fit holds the label weights to 0: a whole grid span costs "
                "label_shrinkage / n of the held-out score (n examples). None: "
                "fusion.LABEL_SHRINKAGE (3). Lower it for labels you trust to cover traffic."
            )
        },
    )
    label_fit: str = field(
        default="safe",
        metadata={
            "help": (
                "How the fusion is fitted on labels. 'safe': the best weights on held-out "
                "labelled queries that do not lower held-out queries whose tools no label "
                "names (most traffic asks for unlabelled tools). 'labelled': the best on "
                "held-out labelled queries alone (the labels cover most traffic)."
            )
        },
    )

    def __post_init__(self) -> None:
        check_positive_int("k", self.k)
        check_fetch_k(self.fetch_k, self.k)
        if (
            isinstance(self.num_context_tools, bool)
            or not isinstance(self.num_context_tools, int)
            or self.num_context_tools < 0
        ):
            msg = f"num_context_tools must be an int >= 0, got {self.num_context_tools!r}."
            raise ValueError(msg)
        if not isinstance(self.fusion, FusionWeights):
            msg = f"fusion must be a FusionWeights, got {type(self.fusion).__name__}."
            raise TypeError(msg)
        if self.base is not None and not isinstance(self.base, FusionWeights):
            msg = f"base must be a FusionWeights or None, got {type(self.base).__name__}."
            raise TypeError(msg)
        if self.base is not None and self.base.uses_labels:
            msg = (
                f"base holds the weights used without labels, got label signals in {self.base!r}"
                "; use base.without_labels()."
            )
            raise ValueError(msg)
        if self.label_shrinkage is not None and (
            isinstance(self.label_shrinkage, bool)
            or not isinstance(self.label_shrinkage, (int, float))
            or not self.label_shrinkage >= 0
        ):
            msg = f"label_shrinkage must be a number >= 0 or None, got {self.label_shrinkage!r}."
            raise ValueError(msg)
        if self.label_fit not in LABEL_FITS:
            msg = f"label_fit must be one of {list(LABEL_FITS)}, got {self.label_fit!r}."
            raise ValueError(msg)
        if not isinstance(self.selection, ToolSelection):
            msg = (
                f"selection must be a ToolSelection, got {type(self.selection).__name__}; "
                "e.g. selection=ToolSelection(always_include=['search_tools'])."
            )
            raise TypeError(msg)

    def fit_start(self) -> FusionWeights:
        """The label-free weights a fit starts from: `base`, else those of `fusion`."""
        return self.base if self.base is not None else self.fusion.without_labels()

    def fetch_depth(self, k: int) -> int:
        """Candidates to fetch per signal for a request of ``k`` tools."""
        return max(self.fetch_k or max(4 * k, DEFAULT_FETCH_DEPTH), k)

    def replace(self, **changes: Any) -> RetrievalSettings:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (``version`` included); `from_dict` reads it back."""
        data = asdict(self)
        data["fusion"] = self.fusion.to_dict()
        data["base"] = None if self.base is None else self.base.to_dict()
        data["selection"] = self.selection.to_dict()
        return {"version": SETTINGS_VERSION, **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RetrievalSettings:
        """Settings from `to_dict` output.

        Raises:
            ValueError: for an unknown version or unknown keys, naming them.
        """
        data = dict(data)
        version = data.pop("version", SETTINGS_VERSION)
        if version not in _READABLE_VERSIONS:
            msg = (
                f"Retrieval settings version {version!r} is not supported (expected one of "
                f"{list(_READABLE_VERSIONS)}); upgrade qta-integrations or re-create the "
                "retriever."
            )
            raise ValueError(msg)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            msg = f"Unknown retrieval settings {unknown}; expected some of {sorted(known)}."
            raise ValueError(msg)
        if "fusion" in data:
            fusion = dict(data["fusion"])
            if version < 3 and "lexical" in fusion and "weights" not in fusion:
                # Before version 3 the lexical signal read texts extended with the labels.
                fusion["labelled_lexical"] = fusion.pop("lexical")
            data["fusion"] = FusionWeights.from_dict(fusion)
        elif version < 4:
            data["fusion"] = FusionWeights()  # the default before version 4: dense only
        if data.get("base") is not None:
            data["base"] = FusionWeights.from_dict(data["base"])
        if "selection" in data:
            data["selection"] = ToolSelection.from_dict(data["selection"])
        return cls(**data)
