"""The data catalog: the project's file validates; bad entries are named in the error."""

from __future__ import annotations

from pathlib import Path

import pytest
from angioflow.flows.catalog import CatalogError, find_catalog, load_catalog
from angioflow.flows.resources import packaged_file

REPO_CATALOG = Path(__file__).resolve().parents[1] / "data_catalog.yaml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "data_catalog.yaml"
    path.write_text(text)
    return path


def test_project_catalog_names_every_dataset_the_flows_use() -> None:
    catalog = load_catalog(REPO_CATALOG)
    assert {
        "raw_exams",
        "case_store",
        "case_file",
        "model_weights",
        "training_set",
        "synthetic_set",
        "reports",
    } <= set(catalog.datasets)
    assert catalog.path("case_store") == REPO_CATALOG.parent / "data" / "02_cases"
    assert catalog.entry("training_set").save_args == {"compression": "gzip", "compression_opts": 4}


def test_placeholders_fill_per_case_paths_relative_to_the_catalog(tmp_path: Path) -> None:
    catalog = load_catalog(
        write(
            tmp_path, "version: 1\ndatasets:\n  f: {type: case_file, filepath: 's/{case_id}.h5'}\n"
        )
    )
    assert catalog.path("f", case_id="p1_OD_abc") == tmp_path.resolve() / "s" / "p1_OD_abc.h5"
    with pytest.raises(CatalogError, match=r"needs placeholders \['case_id'\], got \[\]"):
        catalog.path("f")
    for escape in ("../x", "a/b", ".."):
        with pytest.raises(CatalogError, match="one plain path component"):
            catalog.path("f", case_id=escape)
    with pytest.raises(CatalogError, match="unknown dataset 'store'; the catalog defines: f"):
        catalog.path("store")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "version: 1\ndatasets:\n  store: {type: case_store, filepath: /abs}\n",
            "dataset 'store' field 'filepath'.*relative path",
        ),
        (
            "version: 1\ndatasets:\n  store: {type: case_store, filepath: ../up}\n",
            "dataset 'store' field 'filepath'",
        ),
        (
            "version: 1\ndatasets:\n  store: {type: sql_table, filepath: x}\n",
            "dataset 'store' field 'type'",
        ),
        (
            "version: 1\ndatasets:\n  store: {type: case_store, filepath: x, colour: red}\n",
            "dataset 'store' field 'colour'",
        ),
        (
            "version: 1\ndatasets:\n  store: {type: case_store, filepath: 'x/{a b}'}\n",
            "placeholder",
        ),
        ("version: 2\ndatasets: {}\n", "field 'version'"),
        ("datasets: [1, 2\n", "not valid YAML"),
        ("- 1\n", "must be a mapping"),
        (
            "version: 1\ndatasets:\n  x: !!python/object/apply:os.system ['true']\n",
            "not valid YAML",
        ),
    ],
)
def test_invalid_catalog_errors_name_the_entry(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(CatalogError, match=message) as error:
        load_catalog(write(tmp_path, text))
    assert "\n" not in str(error.value)


def test_missing_catalog_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="pass --catalog FILE"):
        load_catalog(tmp_path / "absent.yaml")


def test_the_packaged_catalog_resolves_against_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outside a project folder the shipped catalog is used, and what commands write (weights,
    stores, reports) lands under the working folder, never inside the installed package."""
    monkeypatch.chdir(tmp_path)
    catalog = find_catalog()
    package = packaged_file("data_catalog.yaml").parent.resolve()
    weights = catalog.path("model_weights", model="vessel")
    assert weights.is_relative_to(tmp_path.resolve()), weights
    assert not weights.is_relative_to(package)
    assert catalog.path("case_store") == tmp_path.resolve() / "data" / "02_cases"
    (tmp_path / "data_catalog.yaml").write_text(
        "version: 1\ndatasets:\n  case_store:\n    type: case_store\n    filepath: mine\n"
    )
    assert find_catalog().path("case_store") == tmp_path.resolve() / "mine"
