"""config/: one strict reader and one error formatter for the experiment config and the ensemble file."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import TINY

from config.ensemble import read_ensemble_spec
from config.reader import read_mapping
from config.schema import load_config
from utils.errors import InputError


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("optimizer: {learning_rat: 0.1}\n", "unknown key 'optimizer.learning_rat'"),
        ("optimizer: {batch_size: many}\n", "bad value for 'optimizer.batch_size'"),
        ("optimizer: [1\n", "cannot parse config"),
        ("- a list\n", "a config must be a mapping"),
    ],
)
def test_config_errors_are_one_line_naming_file_and_key(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: ") and needle in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("members:\n  - checkpoint: a.pt\n    weigth: 2\n", "unknown key 'members.0.weigth'"),
        ("members:\n  - checkpoint: a.pt\n    weight: 0\n", "bad value for 'members.0.weight'"),
        ("members: [\n", "cannot parse ensemble file"),
        ("just text\n", "must be a mapping with 'members'"),
    ],
)
def test_ensemble_file_errors_use_the_same_reader_and_formatter(
    tmp_path: Path, text: str, needle: str
) -> None:
    path = tmp_path / "ensemble.yaml"
    path.write_text(text)
    with pytest.raises(InputError, match=needle) as info:
        read_ensemble_spec(path)
    assert str(info.value).startswith(f"{path}: ")


def test_reader_reads_json_by_suffix_and_an_empty_file_as_empty(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text('{"seed": 3}')
    (tmp_path / "empty.yaml").write_text("")
    assert read_mapping(tmp_path / "a.json", "config file") == {"seed": 3}
    assert read_mapping(tmp_path / "empty.yaml", "config file") == {}
    with pytest.raises(InputError, match="config file not found"):
        read_mapping(tmp_path / "nope.yaml", "config file")


def test_network_names_come_from_the_zoo_registry() -> None:
    from models.zoo import NETWORKS

    assert load_config(TINY, ["network=FPN"]).network == "fpn" and "fpn" in NETWORKS
    with pytest.raises(InputError, match="unknown network 'notanet'"):
        load_config(TINY, ["network=notanet"])
