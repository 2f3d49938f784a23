from __future__ import annotations

from pathlib import Path

import pytest

from parity import DuplicateDefinition, InvalidDefinition
from parity.errors import RepoError
from parity.repo.loader import discover_files, load_repo
from tests.conftest import DRIVER_REPO, write_repo


def test_loads_definitions_across_files_that_import_each_other(driver_repo: Path) -> None:
    loaded = load_repo(driver_repo, "demo")
    catalog = loaded.catalog
    assert set(catalog.entities) == {"driver"}
    assert set(catalog.feature_views) == {"driver_stats"}
    assert catalog.feature_services["driver_service"].refs == ("driver_stats:trips",)
    location = loaded.locations[("feature_view", "driver_stats")]
    assert (location.file.name, location.line) == ("views.py", 5)
    assert loaded.locations[("entity", "driver")].file.name == "entities.py"


def test_duplicate_name_in_two_files_reports_both_locations(tmp_path: Path) -> None:
    files = {
        **DRIVER_REPO,
        "more.py": """
            from parity import Entity

            other = Entity(name="driver", join_keys=["driver_key"])
        """,
    }
    root = write_repo(tmp_path / "r", files)
    with pytest.raises(DuplicateDefinition) as caught:
        load_repo(root, "demo")
    message = str(caught.value)
    assert f"{root / 'entities.py'}:2" in message
    assert f"{root / 'more.py'}:3" in message


def test_definitions_in_module_level_lists_are_found(tmp_path: Path) -> None:
    files = {
        "views.py": """
            from parity import Entity, FeatureView, Field, FileSource, Float64
            driver = Entity(name="driver", join_keys=["driver_id"])
            VIEWS = [
                FeatureView(name=f"v{i}", entities=[driver],
                            schema=[Field(name="conv_rate", dtype=Float64)],
                            source=FileSource(path="data/driver_stats.parquet"))
                for i in range(3)
            ]
        """
    }
    catalog = load_repo(write_repo(tmp_path / "r", files), "demo").catalog
    assert set(catalog.feature_views) == {"v0", "v1", "v2"}


def test_entities_used_only_inside_views_are_registered(tmp_path: Path) -> None:
    files = {
        "views.py": """
            from parity import Entity, FeatureView, Field, FileSource, Float64
            stats = FeatureView(name="stats",
                                entities=[Entity(name="driver", join_keys=["driver_id"])],
                                schema=[Field(name="conv_rate", dtype=Float64)],
                                source=FileSource(path="data/driver_stats.parquet"))
        """
    }
    catalog = load_repo(write_repo(tmp_path / "r", files), "demo").catalog
    assert set(catalog.entities) == {"driver"}


def test_import_error_names_the_file(tmp_path: Path) -> None:
    root = write_repo(tmp_path / "r", {"broken.py": "import not_a_module_anywhere\n"})
    with pytest.raises(RepoError, match=r"broken.py:1 failed to import: ModuleNotFoundError"):
        load_repo(root, "demo")


def test_invalid_definition_in_a_file_surfaces_its_message(tmp_path: Path) -> None:
    root = write_repo(
        tmp_path / "r", {"bad.py": "from parity import Entity\ne = Entity(name='1x')\n"}
    )
    with pytest.raises(
        RepoError, match=r"bad.py:2 failed to import: InvalidDefinition.*identifier"
    ):
        load_repo(root, "demo")


def test_same_named_files_in_two_repos_load_independently(tmp_path: Path) -> None:
    first = write_repo(tmp_path / "a", DRIVER_REPO)
    renamed = {
        **DRIVER_REPO,
        "views.py": DRIVER_REPO["views.py"].replace('"driver_service"', '"svc2"'),
    }
    second = write_repo(tmp_path / "b", renamed)
    assert "driver_service" in load_repo(first, "a").catalog.feature_services
    assert set(load_repo(second, "b").catalog.feature_services) == {"svc2"}
    assert "driver_service" in load_repo(first, "a").catalog.feature_services


def test_hidden_data_and_ignored_files_are_skipped(tmp_path: Path) -> None:
    root = write_repo(tmp_path / "r", DRIVER_REPO)
    for name in (".hidden/x.py", "data/y.py", "scripts/gen.py"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("raise SystemExit('must not run')\n")
    (root / ".parityignore").write_text("# scripts are not definitions\nscripts/*\n")
    assert [p.name for p in discover_files(root)] == ["entities.py", "views.py"]


def test_a_view_using_a_different_entity_than_the_declared_one_is_rejected(tmp_path: Path) -> None:
    files = {
        "entities.py": """
            from parity import Entity
            driver = Entity(name="driver", join_keys=["driver_id"], description="declared")
        """,
        "views.py": """
            from parity import Entity, FeatureView, Field, FileSource, Float64
            stats = FeatureView(name="stats",
                                entities=[Entity(name="driver", join_keys=["driver_id"])],
                                schema=[Field(name="conv_rate", dtype=Float64)],
                                source=FileSource(path="data/driver_stats.parquet"))
        """,
    }
    root = write_repo(tmp_path / "r", files)
    with pytest.raises(InvalidDefinition, match="different definition of entity 'driver'"):
        load_repo(root, "demo")


def test_missing_folder_is_a_repo_error(tmp_path: Path) -> None:
    with pytest.raises(RepoError, match="not a folder"):
        load_repo(tmp_path / "nope", "demo")
