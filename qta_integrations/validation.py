r"""Input validation shared by every entry point.

The pipeline, the LangChain and LlamaIndex retrievers, the LangGraph selector, the evaluation
harness and the CLI all check their inputs with these functions, so a bad value gets the same
error whichever door it came through. Each error names the parameter, shows the value received
(clipped when long) and says what would be valid.

What a query must be (`validate_query`): a ``str`` with at least one visible character and no
lone surrogate. Text made only of whitespace, control characters (NUL, ``\x1b``, ...) or
format characters (zero-width spaces, joiners, byte-order marks) is refused: it carries no
request, and searching with it returns arbitrary tools. A lone surrogate (``"\ud800"``, left by
text decoded with ``errors="surrogateescape"`` or a broken ``\u`` escape) is refused because it
cannot be encoded and would crash the tokenizer. Invisible characters *inside* a query that also
has visible text are kept as they are.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "check_fetch_k",
    "check_optional_positive_int",
    "check_positive_int",
    "check_storage_directory",
    "describe",
    "has_visible_text",
    "validate_histories",
    "validate_history",
    "validate_query",
]

MAX_SHOWN_CHARS = 80
"""Values in error messages are clipped to about this many characters."""

# Unicode categories that never render as text: control, format (zero-width), surrogate,
# and the space separators. Private-use and unassigned code points count as visible (a font
# may draw them, and a newer emoji is "unassigned" to an older Python).
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zs", "Zl", "Zp"})


def describe(value: Any, *, limit: int = MAX_SHOWN_CHARS) -> str:
    """``repr(value)`` for an error message, clipped to about ``limit`` characters.

    Example:
        >>> describe("x" * 500)
        "'xxx...'... (500 chars)"
    """
    shown = repr(value)
    if len(shown) <= limit:
        return shown
    size = f" ({len(value)} chars)" if isinstance(value, (str, bytes)) else ""
    return f"{shown[: limit - 4]}'...{size}" if isinstance(value, str) else f"{shown[:limit]}..."


def has_visible_text(text: str) -> bool:
    r"""Whether ``text`` has a character that is not whitespace, control or zero-width.

    Example:
        >>> has_visible_text("\u200b\x00 \t"), has_visible_text("\u200bweather")
        (False, True)
    """
    return any(
        not ch.isspace() and unicodedata.category(ch) not in _INVISIBLE_CATEGORIES for ch in text
    )


def _check_encodable(name: str, text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        bad = text[err.start]
        msg = (
            f"{name} contains a lone surrogate {bad!r} at index {err.start} (in "
            f"{describe(text)}), which is not valid Unicode: it usually comes from bytes decoded "
            "with errors='surrogateescape' or a broken \\u escape. Decode the text properly, "
            "or clean it with text.encode('utf-8', 'replace').decode('utf-8')."
        )
        raise ValueError(msg) from None


def validate_query(query: Any, *, name: str = "query") -> str:
    r"""Return ``query`` if it is a string with visible text that can be encoded.

    Args:
        query: The value to check.
        name: The parameter's name, for the error message.

    Raises:
        TypeError: if ``query`` is not a string.
        ValueError: if it is empty or whitespace, has no visible character (only control or
            zero-width characters), or contains a lone surrogate.

    Example:
        >>> validate_query("weather in Paris?")
        'weather in Paris?'
        >>> validate_query("\u200b\u200b")
        Traceback (most recent call last):
        ...
        ValueError: query has no visible text, got '\u200b\u200b': only control, zero-width ...
    """
    if not isinstance(query, str):
        msg = (
            f"{name} must be a str, got {type(query).__name__}: {describe(query)}. Pass the "
            "user's request as text."
        )
        raise TypeError(msg)
    if not query.strip():
        msg = f"{name} must not be empty or whitespace, got {describe(query)}."
        raise ValueError(msg)
    _check_encodable(name, query)
    if not has_visible_text(query):
        msg = (
            f"{name} has no visible text, got {describe(query)}: only control, zero-width or "
            "other invisible characters. Pass the user's request as text."
        )
        raise ValueError(msg)
    return query


def check_positive_int(name: str, value: Any) -> int:
    """Return ``value`` if it is an int >= 1 (bools are refused).

    Raises:
        ValueError: naming the parameter and the value received.

    Example:
        >>> check_positive_int("k", True)
        Traceback (most recent call last):
        ...
        ValueError: k must be a positive int, got True.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        msg = f"{name} must be a positive int, got {describe(value)}."
        raise ValueError(msg)
    return value


def check_optional_positive_int(name: str, value: Any) -> int | None:
    """`check_positive_int`, with None allowed (meaning "use the default")."""
    return None if value is None else check_positive_int(name, value)


def check_fetch_k(fetch_k: Any, k: int) -> int | None:
    """Return ``fetch_k`` if it is None or a positive int >= ``k``.

    ``fetch_k`` hits are fetched per search and the top ``k`` are returned, so a ``fetch_k``
    below ``k`` would silently return fewer than ``k`` tools: it is refused instead.

    Raises:
        ValueError: if ``fetch_k`` is not a positive int, or is smaller than ``k``.

    Example:
        >>> check_fetch_k(3, 5)
        Traceback (most recent call last):
        ...
        ValueError: fetch_k (3) must be >= k (5): only fetch_k hits are fetched, so fewer ...
    """
    if fetch_k is None:
        return None
    check_positive_int("fetch_k", fetch_k)
    if fetch_k < k:
        msg = (
            f"fetch_k ({fetch_k}) must be >= k ({k}): only fetch_k hits are fetched, so fewer "
            "than k tools would come back. Raise fetch_k, lower k, or leave fetch_k unset "
            "(max(4 * k, 100))."
        )
        raise ValueError(msg)
    return fetch_k


def validate_history(history: Any, *, name: str = "history") -> tuple[str, ...]:
    """Return the earlier user turns as a tuple of strings (None means no history).

    Args:
        history: None, or a sequence of earlier user turns (strings), oldest first.
        name: The parameter's name, for the error message.

    Raises:
        TypeError: for a bare string (it would become one turn per character), a mapping or
            another non-sequence, or a turn that is not a string.
        ValueError: for a turn with a lone surrogate.

    Example:
        >>> validate_history(None), validate_history(["weather in Paris?"])
        ((), ('weather in Paris?',))
    """
    if history is None:
        return ()
    if isinstance(history, (str, bytes)):
        msg = (
            f"{name} must be a list of earlier user turns, got a {type(history).__name__} "
            f"{describe(history)}. Wrap a single turn in a list: [{describe(history)}]."
        )
        raise TypeError(msg)
    if isinstance(history, (Mapping, set, frozenset)) or not isinstance(history, Iterable):
        msg = (
            f"{name} must be a list of earlier user turns (strings), oldest first, got "
            f"{type(history).__name__}: {describe(history)}."
        )
        raise TypeError(msg)
    turns = tuple(history)
    for i, turn in enumerate(turns):
        if not isinstance(turn, str):
            msg = (
                f"turn {i} of {name} must be a str (an earlier user turn), got "
                f"{type(turn).__name__}: {describe(turn)}."
            )
            raise TypeError(msg)
        _check_encodable(f"turn {i} of {name}", turn)
    return turns


def validate_histories(queries: Sequence[Any], histories: Any) -> list[tuple[str, ...]]:
    """One validated history per query (None means no history for any of them).

    Raises:
        TypeError: if ``histories`` is not a sequence of histories, or one of them is bad
            (see `validate_history`).
        ValueError: if there is not exactly one history per query.
    """
    if histories is None:
        return [()] * len(queries)
    if isinstance(histories, (str, bytes, Mapping)) or not isinstance(histories, Sequence):
        msg = (
            "histories must be a list with one history (a list of turns) per query, got "
            f"{type(histories).__name__}: {describe(histories)}."
        )
        raise TypeError(msg)
    if len(histories) != len(queries):
        msg = f"Got {len(histories)} histories for {len(queries)} queries; pass one per query."
        raise ValueError(msg)
    return [validate_history(h, name=f"the history of query #{i}") for i, h in enumerate(histories)]


def check_storage_directory(name: str, value: Any) -> Path:
    """Return ``value`` as a `Path` if it can be a directory to store an index in.

    Raises:
        TypeError: if ``value`` is not a ``str`` or ``os.PathLike``.
        ValueError: if it is empty or whitespace (an empty path would write into the
            current or the root directory), or names an existing file.

    Example:
        >>> check_storage_directory("persist_directory", "  ")
        Traceback (most recent call last):
        ...
        ValueError: persist_directory must be a directory path, got '  '. Pass a directory ...
    """
    if not isinstance(value, (str, os.PathLike)):
        msg = (
            f"{name} must be a directory path (str or os.PathLike), got "
            f"{type(value).__name__}: {describe(value)}."
        )
        raise TypeError(msg)
    text = os.fspath(value)
    if not isinstance(text, str) or not text.strip():
        msg = (
            f"{name} must be a directory path, got {describe(value)}. Pass a directory such as "
            "'./qta_index', or None to keep the index in memory."
        )
        raise ValueError(msg)
    path = Path(text)
    if path.exists() and not path.is_dir():
        msg = (
            f"{name} {text!r} is a file, not a directory. Pass a directory path (it is "
            "created if missing), e.g. the file's parent plus a new folder name."
        )
        raise ValueError(msg)
    return path
