"""Loaders of the classification task: local CSV/JSONL/Parquet, saved `datasets`, `hf:` and their errors."""

import datasets
import pandas as pd
import pytest

from lowrank_audit.errors import AuditError
from lowrank_audit.tasks.classification import ClassificationOptions, ClassificationTask
from lowrank_audit.tasks.classification_data import ClassificationData, Columns, Split, check_data, load_data

# texts built from words the tiny tokenizer knows; the label does not depend on the group
ROWS = [
    {"sentence": f"The {term} {action}.", "y": label, "who": group, "part": part}
    for part, actions in (("train", [("saved a child from the river", "good"), ("kicked a dog in the street", "bad")]),
                          ("test", [("rescued a dog from a fire", "good"), ("stole a bike from a child", "bad")]))
    for action, label in actions
    for term, group in (("woman", "women"), ("man", "men"), ("mother", "women"), ("father", "men"))
]
COLUMNS = Columns(text="sentence", label="y", group="who", split="part")


def _frame(rows=ROWS) -> pd.DataFrame:
    return pd.DataFrame(rows)


WRITERS = {
    "csv": lambda df, path: df.to_csv(path, index=False),
    "jsonl": lambda df, path: df.to_json(path, orient="records", lines=True),
    "parquet": lambda df, path: df.to_parquet(path),
}


@pytest.mark.parametrize("suffix", list(WRITERS))
def test_flat_files_split_by_the_split_column(tmp_path, suffix):
    path = tmp_path / f"data.{suffix}"
    WRITERS[suffix](_frame(), path)
    data = load_data(str(path), COLUMNS, "train", "test", {})
    assert data.labels == ["bad", "good"]  # no label_words: the train split's labels, sorted
    assert len(data.train) == 8 and list(data.evals) == ["test"] and len(data.evals["test"]) == 8
    assert data.evals["test"].texts[0] == "The woman rescued a dog from a fire."
    assert set(data.evals["test"].groups) == {"women", "men"} and data.train.cluster is None


def test_saved_dataset_dict_and_hf_route_load_the_same_table(tmp_path):
    frame = _frame()
    dd = datasets.DatasetDict({part: datasets.Dataset.from_pandas(g.drop(columns="part").reset_index(drop=True))
                               for part, g in frame.groupby("part")})
    dd.save_to_disk(tmp_path / "saved")
    saved = load_data(str(tmp_path / "saved"), COLUMNS, "train", "test", {"good": "good", "bad": "bad"})
    (tmp_path / "hub").mkdir()
    for part, g in frame.groupby("part"):  # a dataset folder with train/test files, as load_dataset reads a repo
        g.drop(columns="part").to_csv(tmp_path / "hub" / f"{part}.csv", index=False)
    hub = load_data(f"hf:{tmp_path / 'hub'}", COLUMNS, "train", "test", {"good": "good", "bad": "bad"})
    assert saved.labels == hub.labels == ["good", "bad"]
    for a, b in ((saved.train, hub.train), (saved.evals["test"], hub.evals["test"])):
        assert a.texts == b.texts and a.labels == b.labels and a.groups == b.groups


def test_single_saved_dataset_uses_the_split_column_and_counterfactual_ids(tmp_path):
    rows = [dict(r, pair=r["sentence"].split(" ", 2)[2]) for r in ROWS]
    datasets.Dataset.from_pandas(_frame(rows)).save_to_disk(tmp_path / "one")
    cols = COLUMNS.model_copy(update={"counterfactual": "pair"})
    data = load_data(str(tmp_path / "one"), cols, "train", "test", {})
    assert data.evals["test"].cluster[0] == "rescued a dog from a fire."


def test_user_data_runs_through_the_task(tmp_path, tiny):
    WRITERS["csv"](_frame(), tmp_path / "d.csv")
    opts = ClassificationOptions(data=str(tmp_path / "d.csv"), columns=COLUMNS, label_words={"good": "good", "bad": "bad"},
                                 prompt="{text} Answer:")
    task = ClassificationTask(opts, tiny.tokenizer)
    assert task.prompts["test"][0] == "The woman rescued a dog from a fire. Answer:"
    assert [e.completion for e in task.train_examples({}, 0)][:2] == [" good", " good"]
    assert task.positive == "good"


def _write(tmp_path, rows=ROWS):
    path = tmp_path / "data.csv"
    _frame(rows).to_csv(path, index=False)
    return path


def _error(tmp_path, rows=ROWS, columns=COLUMNS, train="train", test="test", words=None):
    return load_data(str(_write(tmp_path, rows)), columns, train, test, words or {})


def test_missing_column(tmp_path):
    with pytest.raises(AuditError, match=r"column 'label' \(the label\) is missing from split 'train'.*options.columns.label"):
        _error(tmp_path, columns=COLUMNS.model_copy(update={"label": "label"}))


def test_missing_split_column(tmp_path):
    with pytest.raises(AuditError, match=r"without a split column 'split'.*options.columns.split"):
        _error(tmp_path, columns=COLUMNS.model_copy(update={"split": "split"}))


def test_missing_split(tmp_path):
    with pytest.raises(AuditError, match=r"split 'validation' not found.*splits: train, test.*options.test_split"):
        _error(tmp_path, test="validation")


def test_label_outside_the_label_set(tmp_path):
    rows = ROWS + [dict(ROWS[-1], y="neutral")]
    with pytest.raises(AuditError, match=r"labels \['neutral'\] in split 'test'.*not in the label set \['good', 'bad'\]"):
        _error(tmp_path, rows=rows, words={"good": "good", "bad": "bad"})


def test_group_with_no_examples_in_a_split(tmp_path):
    rows = ROWS + [dict(ROWS[0], who="elders")]  # 'elders' only in train
    with pytest.raises(AuditError, match=r"groups \['elders'\] have no examples in split 'test'"):
        _error(tmp_path, rows=rows)


def test_empty_split(tmp_path):
    train = load_data(str(_write(tmp_path)), COLUMNS, "train", "test", {}).train
    with pytest.raises(AuditError, match=r"split 'test' of 'mine.csv' has no rows"):
        check_data(ClassificationData(train, {"test": Split([], [], [])}, ["good", "bad"]), "mine.csv")
    (tmp_path / "hub").mkdir()  # through the datasets route: an empty split file is refused by load_dataset
    _frame().drop(columns="part").to_csv(tmp_path / "hub" / "train.csv", index=False)
    _frame().iloc[:0].drop(columns="part").to_csv(tmp_path / "hub" / "test.csv", index=False)
    with pytest.raises(AuditError, match=r"could not load dataset .*hub.*no data"):
        load_data(f"hf:{tmp_path / 'hub'}", COLUMNS, "train", "test", {})


def test_unknown_file_type_and_missing_file(tmp_path):
    (tmp_path / "data.txt").write_text("hello")
    with pytest.raises(AuditError, match=r"unknown data file type '.txt'.*\.csv, \.jsonl, \.parquet"):
        load_data(str(tmp_path / "data.txt"), COLUMNS, "train", "test", {})
    with pytest.raises(AuditError, match=r"data file .*nothing.csv' does not exist"):
        load_data(str(tmp_path / "nothing.csv"), COLUMNS, "train", "test", {})


def test_folder_that_is_not_a_saved_dataset(tmp_path):
    (tmp_path / "plain").mkdir()
    with pytest.raises(AuditError, match="is not a saved dataset"):
        load_data(str(tmp_path / "plain"), COLUMNS, "train", "test", {})
