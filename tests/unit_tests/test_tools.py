from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from qta_integrations.sources.base import MAX_PARAMETER_CHARS
from qta_integrations.sources.files import read_records
from qta_integrations.tools import Tool, ToolCatalog, ToolParameter, parameters_from_schema


def _langchain_tools() -> list[Any]:
    from langchain_core.tools import tool

    @tool
    def get_weather(city: str) -> str:
        """Current weather and forecast for a city."""
        return f"Sunny in {city}"

    @tool
    def get_stock_quote(ticker: str) -> str:
        """Latest price of a stock ticker symbol."""
        return f"{ticker}: 1.0"

    return [get_weather, get_stock_quote]


def _llama_index_tools() -> list[Any]:
    from llama_index.core.tools import FunctionTool

    def get_weather(city: str) -> str:
        """Current weather and forecast for a city."""
        return f"Sunny in {city}"

    def get_stock_quote(ticker: str) -> str:
        """Latest price of a stock ticker symbol."""
        return f"{ticker}: 1.0"

    return [FunctionTool.from_defaults(fn) for fn in (get_weather, get_stock_quote)]


def test_from_dicts_keeps_order_fields_and_extra_metadata(tool_dicts: list[dict[str, str]]) -> None:
    records: list[dict[str, Any]] = [dict(t) for t in tool_dicts]
    records[0]["category"] = "travel"
    catalog = ToolCatalog.from_dicts(records)
    assert catalog.ids == [t["id"] for t in tool_dicts]
    weather = catalog["weather"]
    assert weather.name == "get_weather"
    assert weather.text == "get_weather: Current weather and forecast for a city."
    assert dict(weather.metadata) == {"category": "travel"}
    assert catalog.to_dicts()[0] == records[0]
    assert catalog[1].id == "stock_quote"
    assert [t.id for t in catalog[:2]] == ["weather", "stock_quote"]
    assert "weather" in catalog and "nope" not in catalog
    assert weather in catalog
    assert catalog.get("nope") is None
    assert repr(catalog) == f"ToolCatalog({len(tool_dicts)} tools)"


def test_id_defaults_to_name_and_text_without_separate_name() -> None:
    catalog = ToolCatalog.from_dicts([{"name": "lookup", "description": "Look a word up."}])
    assert catalog.ids == ["lookup"]
    assert Tool(id="x", name="", description="Only a description.").text == "Only a description."
    same = Tool(id="x", name="Same text.", description="Same text.")
    assert same.text == "Same text."


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_from_file(tmp_path: Path, tool_dicts: list[dict[str, str]], suffix: str) -> None:
    path = tmp_path / f"tools{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(tool_dicts), encoding="utf-8")
    else:
        lines = [json.dumps(t) for t in tool_dicts]
        path.write_text("\n".join(lines[:3]) + "\n\n" + "\n".join(lines[3:]) + "\n")
    catalog = ToolCatalog.from_file(path)
    assert catalog.to_dicts() == tool_dicts
    assert ToolCatalog.from_any(path).ids == catalog.ids
    assert ToolCatalog.from_any(str(path)).ids == catalog.ids


def test_read_records_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"missing\.json"):
        read_records(tmp_path / "missing.json")
    path = tmp_path / "tools.json"
    path.write_text(json.dumps({"id": "x"}))  # one object: one record, like a one-line JSONL
    assert read_records(path) == [{"id": "x"}]
    path.write_text('[{"id": "x"},\n{"id": }]')
    with pytest.raises(ValueError, match=r"tools\.json' is not valid JSON: .* line 2, column 8"):
        read_records(path)


@pytest.mark.parametrize(
    ("make_tools", "framework_object"),
    [(_langchain_tools, True), (_llama_index_tools, True), (lambda: None, False)],
    ids=["langchain", "llama_index", "dicts"],
)
def test_from_any_accepts_framework_tools(
    make_tools: Callable[[], list[Any] | None], framework_object: bool
) -> None:
    objects = make_tools()
    tools = objects or [
        {"id": "get_weather", "description": "Current weather and forecast for a city."},
        {"id": "get_stock_quote", "description": "Latest price of a stock ticker symbol."},
    ]
    catalog = ToolCatalog.from_any(tools)
    assert catalog.ids == ["get_weather", "get_stock_quote"]
    assert "Current weather and forecast for a city." in catalog["get_weather"].description
    if framework_object:
        assert objects is not None
        assert [t.obj for t in catalog] == objects
    else:
        assert all(t.obj is None for t in catalog)
    assert ToolCatalog.from_any(catalog) is catalog
    assert ToolCatalog.from_any(list(catalog)).ids == catalog.ids


def test_duplicate_ids_name_the_id_and_the_fix(tool_dicts: list[dict[str, str]]) -> None:
    records = [*tool_dicts, {"id": "weather", "name": "other", "description": "Another tool."}]
    with pytest.raises(ValueError, match=r"Duplicate tool id 'weather'.*explicit 'id'"):
        ToolCatalog.from_dicts(records)


def test_duplicate_framework_tool_names() -> None:
    tools = _langchain_tools()
    with pytest.raises(ValueError, match="Duplicate tool id 'get_weather'"):
        ToolCatalog.from_any([tools[0], tools[0]])


@pytest.mark.parametrize("description", ["", "   \n"])
def test_empty_description_names_the_id_and_the_fix(description: str) -> None:
    records = [
        {"id": "ok", "description": "Fine."},
        {"id": "blank", "name": "blank", "description": description},
    ]
    with pytest.raises(ValueError, match=r"Tool 'blank' has an empty description.*one sentence"):
        ToolCatalog.from_dicts(records)


def test_zero_tools() -> None:
    with pytest.raises(ValueError, match="catalogue is empty"):
        ToolCatalog([])
    with pytest.raises(ValueError, match="catalogue is empty"):
        ToolCatalog.from_any([])


@pytest.mark.parametrize(
    ("record", "error", "pattern"),
    [
        ({"description": "No id."}, ValueError, r"tool #0 has no 'id'.*Add an 'id'"),
        ({"id": "  ", "description": "Blank id."}, ValueError, "has no 'id'"),
        ({"id": "x", "description": 3}, TypeError, r"\(id 'x'\) has a non-string description"),
        ("not a mapping", TypeError, "must be a mapping"),
    ],
)
def test_bad_records(record: Any, error: type[Exception], pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        ToolCatalog.from_dicts([record])


def test_bad_inputs_to_from_any() -> None:
    with pytest.raises(TypeError, match="single mapping"):
        ToolCatalog.from_any({"id": "x", "description": "One tool."})
    with pytest.raises(TypeError, match="Unsupported tool type int"):
        ToolCatalog.from_any([1, 2])
    with pytest.raises(TypeError, match="Expected Tool records, got str"):
        ToolCatalog([Tool(id="x", name="x", description="d"), "y"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="empty id"):
        ToolCatalog([Tool(id=" ", name="blank", description="d")])


def test_check_ids_lists_every_unknown_id(tool_dicts: list[dict[str, str]]) -> None:
    catalog = ToolCatalog.from_dicts(tool_dicts)
    assert catalog.check_ids(["weather", "email"]) == ["weather", "email"]
    with pytest.raises(ValueError, match=r"2 tool id\(s\).*\['nope', 'zzz'\].*'weather'") as info:
        catalog.check_ids(["zzz", "weather", "nope", "zzz"], context="training labels")
    assert str(info.value).startswith("training labels name")
    with pytest.raises(ValueError, match=r"\['nope'\]"):
        catalog["nope"]


# -- parameters ------------------------------------------------------------------------------


def test_tools_without_parameters_index_the_same_text_as_before(
    tool_dicts: list[dict[str, str]],
) -> None:
    for record in tool_dicts:
        tool = ToolCatalog.from_dicts([record])[0]
        assert tool.parameters == ()
        assert tool.text == f"{record['name']}: {record['description']}"
        assert tool.to_dict() == record  # no 'parameters' key written


@pytest.mark.parametrize(
    "parameters",
    [
        {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City to forecast."},
                "days": {"type": "integer"},
            },
        },
        [{"name": "city", "description": "City to forecast."}, {"name": "days"}],
        [{"name": "city", "description": "City to forecast."}, "days"],
    ],
    ids=["json-schema", "records", "names"],
)
def test_parameters_of_a_record(parameters: Any) -> None:
    record = {"id": "w", "name": "get_weather", "description": "Weather.", "parameters": parameters}
    tool = ToolCatalog.from_dicts([record])[0]
    assert tool.parameters == (ToolParameter("city", "City to forecast."), ToolParameter("days"))
    assert tool.text == "get_weather: Weather. Parameters: city (City to forecast), days."
    assert "parameters" not in tool.metadata
    again = Tool.from_dict(tool.to_dict())  # what persist writes reads back the same
    assert again == tool and again.text == tool.text


def test_parameter_text_is_one_short_line() -> None:
    long = " ".join(["word"] * 60)
    text = ToolParameter("q", f"A query\n   spanning lines. {long}.").text
    assert "\n" not in text and text.startswith("q (A query spanning lines. word")
    assert text.endswith("...)") and len(text) <= MAX_PARAMETER_CHARS + 10
    tool = Tool(id="x", name="", description="Search", parameters=(ToolParameter("q"),))
    assert tool.text == "Search. Parameters: q."


def test_parameters_from_schema_orders_and_tolerates() -> None:
    schema = {"properties": {"b": {"description": 3}, "a": True}}  # no type: an object
    assert parameters_from_schema(schema) == (ToolParameter("b"), ToolParameter("a"))
    assert parameters_from_schema({}) == ()
    with pytest.raises(ValueError, match=r"^crm tool 'x' has an input schema of type list"):
        parameters_from_schema([1], where="crm tool 'x'")


def test_langchain_tools_index_their_parameters() -> None:
    from langchain_core.tools import StructuredTool, tool

    @tool(parse_docstring=True)
    def get_forecast(city: str, days: int = 3) -> str:
        """Weather forecast for a city.

        Args:
            city: The city to forecast.
            days: How many days ahead.
        """
        return city

    catalog = ToolCatalog.from_langchain_tools([get_forecast, *_langchain_tools()])
    assert catalog["get_forecast"].text == (
        "get_forecast: Weather forecast for a city. Parameters: city (The city to forecast), "
        "days (How many days ahead)."
    )
    assert catalog["get_weather"].text == (
        "get_weather: Current weather and forecast for a city. Parameters: city."
    )
    bad = StructuredTool(
        name="echo",
        description="Repeat it.",
        args_schema={"type": "string"},
        func=lambda x: x,
    )
    with pytest.raises(ValueError, match=r"LangChain tool 'echo' has an input schema of type"):
        ToolCatalog.from_langchain_tools([bad])


def test_tool_refuses_parameters_that_are_not_records() -> None:
    with pytest.raises(TypeError, match=r"Tool 'x': parameters must be ToolParameter records"):
        Tool(id="x", name="x", description="d", parameters=("city",))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="parameter's name must be a non-empty str"):
        ToolParameter(" ")
