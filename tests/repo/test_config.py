from __future__ import annotations

from pathlib import Path

import pytest

from parity import ConfigError
from parity.repo.config import load_config


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "parity.yaml").write_text(text)
    return tmp_path


def test_defaults_are_the_embedded_backends(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "project: fraud\n"))
    assert (config.registry.type, config.offline.type, config.online.type) == (
        "sqlite",
        "duckdb",
        "sqlite",
    )
    assert config.registry.database_url(tmp_path) == f"sqlite:///{tmp_path / 'data/registry.db'}"


def test_unknown_key_is_an_error_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"field 'registry.pth'.*not a known setting"):
        load_config(write(tmp_path, "project: p\nregistry:\n  pth: x.db\n"))


def test_postgres_registry_needs_a_url(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs url"):
        load_config(write(tmp_path, "project: p\nregistry:\n  type: postgres\n"))


def test_environment_variables_are_expanded_from_the_given_mapping(tmp_path: Path) -> None:
    text = "project: p\nregistry:\n  type: postgres\n  url: postgresql://${PGUSER}@h/db\n"
    config = load_config(write(tmp_path, text), {"PGUSER": "ann"})
    assert config.registry.url == "postgresql://ann@h/db"


def test_missing_environment_variable_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\$\{NOPE\}"):
        load_config(write(tmp_path, "project: ${NOPE}\n"), {})


def test_missing_file_says_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="parity init"):
        load_config(tmp_path)


@pytest.mark.parametrize("text", ["project: [1, 2\n", "- a\n- b\n", "project: bad-name\n"])
def test_malformed_files_are_config_errors(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError):
        load_config(write(tmp_path, text))
