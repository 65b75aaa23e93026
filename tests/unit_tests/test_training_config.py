from __future__ import annotations

import argparse

import pytest

from qta_integrations.training import QTATrainingConfig
from qta_integrations.training.cli import add_config_arguments, config_from_args


def test_defaults_are_valid_and_use_a_lora_learning_rate() -> None:
    config = QTATrainingConfig()
    assert config.num_candidates >= 4
    assert config.learning_rate > 1e-6
    assert config.grade_mode in ("fused", "alone")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("num_candidates", 1),
        ("num_candidates", 2.5),
        ("num_candidates", True),
        ("max_new_tokens", 0),
        ("pairs_per_example", 0),
        ("rounds", 0),
        ("num_epochs", 0),
        ("batch_size", 0),
        ("sft_epochs", -1),
        ("num_few_shot", -1),
        ("seed", -3),
        ("temperature", 0.0),
        ("top_p", 1.5),
        ("top_p", 0.0),
        ("learning_rate", -1e-4),
        ("beta", 0),
        ("lora_dropout", 1.2),
        ("warmup_ratio", 1.0),
        ("grade_mode", "best"),
        ("target_modules", ()),
        ("target_modules", ""),
    ],
)
def test_bad_values_name_the_field_and_the_value(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field) as info:
        QTATrainingConfig(**{field: value})  # type: ignore[arg-type]
    assert repr(value) in str(info.value)


def test_every_field_has_help() -> None:
    import dataclasses

    for f in dataclasses.fields(QTATrainingConfig):
        assert f.metadata.get("help"), f.name


def test_target_modules_list_becomes_a_tuple_and_round_trips() -> None:
    config = QTATrainingConfig(target_modules=["q_proj", "v_proj"])  # type: ignore[arg-type]
    assert config.target_modules == ("q_proj", "v_proj")
    data = config.to_dict()
    assert data["target_modules"] == ["q_proj", "v_proj"]
    assert QTATrainingConfig.from_dict(data) == config


def test_from_dict_rejects_unknown_fields() -> None:
    with pytest.raises(ValueError, match="num_candidate"):
        QTATrainingConfig.from_dict({"num_candidate": 4})


def test_cli_flags_are_built_from_the_fields() -> None:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    args = parser.parse_args(
        [
            "--num-candidates",
            "6",
            "--learning-rate",
            "1e-4",
            "--no-include-original",
            "--grade-mode",
            "alone",
            "--target-modules",
            "q_proj",
            "v_proj",
        ]
    )
    config = config_from_args(args)
    assert config.num_candidates == 6
    assert config.learning_rate == pytest.approx(1e-4)
    assert config.include_original is False
    assert config.grade_mode == "alone"
    assert config.target_modules == ("q_proj", "v_proj")
    assert config.beta == QTATrainingConfig().beta  # untouched flags keep the defaults


def test_cli_bad_value_is_reported_by_the_config() -> None:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    with pytest.raises(ValueError, match="num_candidates"):
        config_from_args(parser.parse_args(["--num-candidates", "1"]))
