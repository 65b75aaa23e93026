"""The signal registry: the open list of signals the fusion weighs.

Every signal is one `Signal` subclass and one `register_signal` call. The registry is what
the rest of the core reads: `qta_integrations.fusion.FusionWeights` accepts a weight for any
registered name (and refuses any other, naming it), `fit_weights` tries each signal's own
`Signal.grid`, the fit treats the signals with `Signal.uses_labels` as label evidence, and
every `QTAPipeline` builds one instance of each registered signal from its
`SignalResources`. Nothing else is edited to add one.

Example:
    .. code-block:: python

        from qta_integrations.signals import (
            Signal, SignalContext, SignalScores, register_signal, registered_signals,
            unregister_signal,
        )

        class ShortNameSignal(Signal):
            # Prefers tools with short names: a toy signal.
            name = "short_name"
            grid = (0.0, 0.5)

            def __init__(self, resources):
                self._catalog = resources.catalog

            def scores(self, context: SignalContext) -> list[SignalScores]:
                lengths = {t.id: -len(t.name) / 10 for t in self._catalog()}
                return [SignalScores(lengths, 0.0) for _ in context.queries]

        register_signal(ShortNameSignal, build=ShortNameSignal)
        print("short_name" in registered_signals())  # True
        unregister_signal("short_name")
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from qta_integrations.signals.base import Signal

if TYPE_CHECKING:
    from qta_integrations.memory import ExampleMemory
    from qta_integrations.stores.bm25 import BM25ToolIndex
    from qta_integrations.tools import ToolCatalog

__all__ = [
    "SignalResources",
    "SignalSpec",
    "build_signal",
    "register_signal",
    "registered_signals",
    "signal_spec",
    "unregister_signal",
]

SignalT = TypeVar("SignalT", bound=type[Signal])


@dataclass(frozen=True)
class SignalResources:
    """What a pipeline lends its signals: each is a zero-argument callable, read when needed.

    Attributes:
        catalog: The current tool catalogue.
        lexical_index: The BM25 index over the catalogue (built on first call).
        memory: The labelled examples.
    """

    catalog: Callable[[], ToolCatalog]
    lexical_index: Callable[[], BM25ToolIndex]
    memory: Callable[[], ExampleMemory]


@dataclass(frozen=True)
class SignalSpec:
    """A registered signal: its class and how a pipeline builds an instance.

    Attributes:
        cls: The `Signal` subclass (its ``name``, ``uses_labels``, ``needs_rewrite``, ``grid``).
        build: Builds the instance from a pipeline's `SignalResources`.
    """

    cls: type[Signal]
    build: Callable[[SignalResources], Signal]

    @property
    def name(self) -> str:
        """The signal's name."""
        return self.cls.name

    @property
    def uses_labels(self) -> bool:
        """Whether the signal speaks only for labelled tools."""
        return self.cls.uses_labels

    @property
    def needs_rewrite(self) -> bool:
        """Whether the signal reads the rewrite."""
        return self.cls.needs_rewrite

    @property
    def grid(self) -> tuple[float, ...]:
        """The weights the fit tries."""
        return tuple(self.cls.grid)


_lock = threading.Lock()
_registry: dict[str, SignalSpec] = {}


def register_signal(
    cls: SignalT,
    *,
    build: Callable[[SignalResources], Signal] | None = None,
    replace: bool = False,
) -> SignalT:
    """Add a signal to the registry (usable as a class decorator without arguments).

    Args:
        cls: A `Signal` subclass with a ``name``.
        build: Builds an instance from a pipeline's `SignalResources`; default ``cls()``.
        replace: Replace a signal already registered under that name.

    Returns:
        ``cls``, unchanged.

    Raises:
        TypeError: if ``cls`` is not a `Signal` subclass.
        ValueError: if it has no name, or the name is taken and ``replace`` is False.
    """
    if not (isinstance(cls, type) and issubclass(cls, Signal)):
        msg = f"register_signal takes a Signal subclass, got {cls!r}."
        raise TypeError(msg)
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name.isidentifier():
        msg = (
            f"{cls.__name__}.name must be an identifier-like string (it keys saved weights), "
            f"got {name!r}."
        )
        raise ValueError(msg)
    grid = tuple(cls.grid)
    if not grid or any(isinstance(w, bool) or not isinstance(w, (int, float)) for w in grid):
        msg = f"{cls.__name__}.grid must be a non-empty tuple of weights, got {cls.grid!r}."
        raise ValueError(msg)
    with _lock:
        if name in _registry and not replace and _registry[name].cls is not cls:
            msg = (
                f"A signal named {name!r} is already registered ({_registry[name].cls.__name__})"
                "; choose another name, or pass replace=True."
            )
            raise ValueError(msg)
        _registry[name] = SignalSpec(cls, build or (lambda _resources: cls()))
    return cls


def unregister_signal(name: str) -> None:
    """Remove a signal from the registry (pipelines built before keep their instance).

    Raises:
        KeyError: if no signal has that name.
    """
    with _lock:
        if name not in _registry:
            raise KeyError(_unknown_message(name))
        del _registry[name]


def registered_signals() -> Mapping[str, SignalSpec]:
    """The registered signals by name, in registration order (``dense`` first)."""
    with _lock:
        return dict(_registry)


def signal_spec(name: str) -> SignalSpec:
    """The registered signal ``name``.

    Raises:
        KeyError: for a name no signal has, naming the registered ones.
    """
    with _lock:
        spec = _registry.get(name)
    if spec is None:
        raise KeyError(_unknown_message(name))
    return spec


def build_signal(name: str, resources: SignalResources) -> Signal:
    """An instance of the registered signal ``name`` for a pipeline's resources."""
    return signal_spec(name).build(resources)


def _unknown_message(name: object) -> str:
    return (
        f"No signal named {name!r} is registered; registered signals: {list(_registry)}. "
        "Register it (qta_integrations.signals.register_signal) before using or loading "
        "weights that name it."
    )
