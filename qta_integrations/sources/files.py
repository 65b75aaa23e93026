"""Tools from files: JSON and JSONL reading, and the tool records of a file.

`read_numbered_records` reads any JSON list / JSONL file with the line of each record (the
labelled-example and dataset loaders use it too); `tools_from_file` turns a file of tool
records into `Tool`s, naming the file and the line in every error.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from qta_integrations.sources.base import Tool
from qta_integrations.validation import describe

__all__ = ["read_numbered_records", "read_records", "tools_from_file"]


def tools_from_file(path: str | Path, *, require_names: bool = False) -> list[Tool]:
    """Read the `Tool` records of a JSON list or a JSONL file.

    The source behind `ToolCatalog.from_file`, the public entry point, whose docstring lists
    the arguments and the errors (each names the file and the line of the record).
    """
    path = Path(path)
    shown = str(path)
    tools: list[Tool] = []
    lines: dict[str, int] = {}
    for position, (line, record) in enumerate(read_numbered_records(path)):
        source = f"line {line} of {shown!r}"
        if require_names and isinstance(record, Mapping) and "name" not in record:
            msg = (
                f'tool #{position} ({source}) has no \'name\'. Add one ("name": "" '
                "indexes the description alone), or opt in to using the id as the name "
                "(names_from_ids=True; CLI: --names-from-ids)."
            )
            raise ValueError(msg)
        try:
            tool = Tool.from_dict(record, position=position, source=source)
        except TypeError as err:  # the file's content is wrong, not the argument's type
            raise ValueError(str(err)) from None
        if tool.id in lines:
            msg = (
                f"Duplicate tool id {tool.id!r} on lines {lines[tool.id]} and {line} of "
                f"{shown!r}. Tool ids must be unique: rename one of the tools or give it an "
                "explicit 'id'."
            )
            raise ValueError(msg)
        if not tool.description.strip():
            msg = (
                f"Tool {tool.id!r} ({source}) has an empty description. Retrieval matches "
                "on the description: write one sentence saying what the tool does."
            )
            raise ValueError(msg)
        lines[tool.id] = line
        tools.append(tool)
    if not tools:
        msg = f"{shown!r} holds no tools (an empty list). Add at least one tool record."
        raise ValueError(msg)
    return tools


def read_records(path: str | Path) -> list[Any]:
    """Read the records of a JSON or JSONL file (see `read_numbered_records`)."""
    return [record for _, record in read_numbered_records(path)]


def read_numbered_records(path: str | Path) -> list[tuple[int, Any]]:
    """Read the records of a JSON or JSONL file, each with the 1-based line it starts on.

    The format is decided by the content, not the file name: a file whose first non-blank
    character is ``[`` or ``{`` and that parses as one JSON document is JSON (a list of
    records, or one record); anything else is JSONL, one JSON value per non-blank line. A
    UTF-8 byte-order mark is ignored.

    Raises:
        FileNotFoundError: if the file does not exist.
        IsADirectoryError: if ``path`` is a directory.
        ValueError: if the file is empty, not UTF-8, or not valid JSON / JSONL; the message
            names the file, the line (and column) and what to do.
    """
    path = Path(path)
    shown = str(path)
    if not path.exists():
        msg = f"File not found: {shown!r}. Pass the path of an existing JSON or JSONL file."
        raise FileNotFoundError(msg)
    if path.is_dir():
        msg = f"{shown!r} is a directory, not a file. Pass the JSON or JSONL file inside it."
        raise IsADirectoryError(msg)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        msg = (
            f"{shown!r} is not UTF-8 text (byte {err.start}: {err.reason}). Save it as UTF-8 "
            "JSON or JSONL."
        )
        raise ValueError(msg) from None
    stripped = text.lstrip()
    if not stripped:
        msg = (
            f"{shown!r} is empty. Write a JSON list of records, or one JSON object per line "
            "(JSONL)."
        )
        raise ValueError(msg)
    document_error: json.JSONDecodeError | None = None
    if stripped[0] in "[{":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            document_error = err
        else:
            if isinstance(data, list):
                return list(zip(_item_lines(text), data, strict=True))
            return [(text.count("\n", 0, len(text) - len(stripped)) + 1, data)]
        if stripped[0] == "[":
            raise _json_error(shown, document_error) from None
    records: list[tuple[int, Any]] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            records.append((number, json.loads(line)))
        except json.JSONDecodeError as err:
            if not records and document_error is not None:
                # Starts like one JSON object but is neither that nor JSONL: report the document.
                raise _json_error(shown, document_error) from None
            msg = (
                f"Line {number} of {shown!r} is not valid JSON ({err.msg} at column {err.colno})"
                f": {describe(line.strip())}. Each non-blank line of a JSONL file must be one "
                "JSON object; fix or delete that line."
            )
            raise ValueError(msg) from None
    return records


def _json_error(shown: str, err: json.JSONDecodeError) -> ValueError:
    msg = (
        f"{shown!r} is not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}. Fix "
        "that line, or write the records as JSONL (one JSON object per line)."
    )
    return ValueError(msg)


def _item_lines(text: str) -> list[int]:
    """The line on which each item of the top-level JSON list in ``text`` starts."""
    decoder = json.JSONDecoder()
    whitespace = " \t\n\r"
    pos = text.index("[") + 1
    line, counted = 1, 0
    lines: list[int] = []
    while True:
        while pos < len(text) and text[pos] in whitespace:
            pos += 1
        if pos >= len(text) or text[pos] == "]":
            return lines
        line += text.count("\n", counted, pos)
        counted = pos
        lines.append(line)
        _, pos = decoder.raw_decode(text, pos)
        while pos < len(text) and text[pos] in whitespace:
            pos += 1
        if pos < len(text) and text[pos] == ",":
            pos += 1
