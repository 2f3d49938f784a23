"""A training job run end to end on a tiny repo: label maturity (checked against an independent
count), the recorded training set, the registered version and its lineage, captured logs; the
bad training functions and a label source without a declared column."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from parity.errors import JobNotFound, TrainingJobNotFound
from tests.jobs.support import LABEL_DELAY, NOW, label_rows, open_store


def matured_oracle() -> pd.DataFrame:
    """The label rows a job at NOW may train on, computed with pandas from the raw rows."""
    frame = pd.DataFrame(label_rows())
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True)
    frame["label_timestamp"] = pd.to_datetime(frame["label_timestamp"], utc=True)
    cutoff = pd.Timestamp(NOW - LABEL_DELAY)
    return frame[(frame.event_timestamp <= cutoff) & (frame.label_timestamp <= pd.Timestamp(NOW))]


def test_a_training_job_registers_a_version_on_matured_labels_only(tiny_repo: Path) -> None:
    with open_store(tiny_repo) as store:
        queued = store.jobs.submit("ok_job")
        assert queued.status == "queued" and queued.attempt == 1 and queued.model == "m"
        [done] = store.jobs.run_pending(now=lambda: NOW)
        assert done.id == queued.id
        assert done.status == "succeeded", done.error
        oracle = matured_oracle()
        everything = pd.DataFrame(label_rows())
        young = (pd.to_datetime(everything.event_timestamp, utc=True) > NOW - LABEL_DELAY).sum()
        assert 0 < len(oracle) < len(everything) - young  # some rows were dropped as unknown
        labels = done.result["labels"]
        assert labels["kept"] == len(oracle)
        assert labels["too_recent"] == young
        assert labels["label_unknown"] == len(everything) - young - len(oracle)
        dataset = store.datasets.get(done.result["dataset"])
        assert dataset.name == f"ok_job_{done.id}" and dataset.feature_service == "svc"
        assert dataset.row_count == len(oracle)
        built = pd.read_parquet(dataset.path)
        assert built.event_timestamp.max() <= pd.Timestamp(NOW - LABEL_DELAY)
        assert sorted(built.event_timestamp) == sorted(oracle.event_timestamp)
        version = store.models.get_version("m", done.result["version"])
        assert version.training_dataset == dataset.name
        assert version.dataset_fingerprint == dataset.fingerprint
        assert version.feature_service == "svc"
        assert version.tags == {"job": "ok_job", "job_id": str(done.id)}
        assert version.metrics == {"rows": float(len(oracle))}
        assert version.params["feature_importance"] == {"spend": 0.7, "amount": 0.3}
        assert store.models.get_alias("m", "candidate").version == version.version
        names = [item["name"] for item in (version.signature or {})["inputs"]]
        assert names == ["spend", "amount"]
        assert f"printed: {len(oracle)} rows for {dataset.name}" in done.logs
        assert f"fitted on {len(oracle)} rows" in done.logs
        assert done.started_at == NOW and done.finished_at == NOW


@pytest.mark.parametrize(
    ("name", "reason", "retried"),
    [
        ("raises_job", "raised RuntimeError: the fit diverged", True),
        ("none_job", "returned None", False),
        ("unknown_input_job", "inputs ['zzz'] are neither features", False),
        ("local_class_job", "class Mean is defined in the repo (module 'training')", False),
        ("bad_importance_job", "importance['spend'] = nan", False),
        ("wrong_keys_job", "no join key column 'account_id', needed by feature view", False),
    ],
)
def test_a_bad_training_function_fails_the_job_and_registers_nothing(
    tiny_repo: Path, name: str, reason: str, retried: bool
) -> None:
    with open_store(tiny_repo) as store:
        store.jobs.submit(name)
        [done] = store.jobs.run_pending(now=lambda: NOW)
        assert done.status == "failed"
        assert reason in (done.error or "")
        assert store.models.models() == []  # nothing registered
        queued = store.jobs.list(status="queued")
        if retried:  # a raise may be transient: retried after the job's retry_delay (1 h)
            [retry] = queued
            assert retry.retry_of == done.id and retry.attempt == 2
            assert retry.not_before == NOW + pd.Timedelta(hours=1)
            assert done.result["retry"] == retry.id
        else:  # a retry would return the same: the repo must change first
            assert queued == []


def test_a_label_source_without_a_declared_column_fails_naming_it(tiny_repo: Path) -> None:
    with open_store(tiny_repo) as store:
        store.jobs.submit("missing_column_job")
        [done] = store.jobs.run_pending(now=lambda: NOW)
        assert done.status == "failed"
        assert "[label_column_not_found]" in (done.error or "")
        assert "'known_at'" in (done.error or "")
        assert "label_timestamp_field" in (done.error or "")
        assert store.jobs.list(status="queued") == []


def test_unknown_names_and_ids_are_refused(tiny_repo: Path) -> None:
    with open_store(tiny_repo) as store:
        with pytest.raises(TrainingJobNotFound, match=r"'nope'.*ok_job"):
            store.jobs.submit("nope")
        with pytest.raises(JobNotFound, match="no job 999"):
            store.jobs.get(999)
        assert store.jobs.list() == []


def test_a_train_function_changed_since_apply_is_not_run(tiny_repo: Path) -> None:
    code = (tiny_repo / "training.py").read_text()
    (tiny_repo / "training.py").write_text(code.replace('"linear"', '"quadratic"'))
    with open_store(tiny_repo) as store:
        store.jobs.submit("ok_job")
        [done] = store.jobs.run_pending(now=lambda: NOW)
        assert done.status == "failed"
        assert "'train_ok' in the repo differs from the applied one: apply" in (done.error or "")
        assert store.models.models() == [] and store.jobs.active() == []
        assert store.datasets.list() == []  # it stopped before building anything


def test_a_label_file_not_written_yet_is_retried(tiny_repo: Path) -> None:
    (tiny_repo / "data" / "labels.parquet").unlink()
    with open_store(tiny_repo) as store:
        store.jobs.submit("ok_job")
        [done] = store.jobs.run_pending(now=lambda: NOW)
        assert done.status == "failed" and "[label_source_invalid]" in (done.error or "")
        assert "matches no file" in (done.error or "")
        [retry] = store.jobs.list(status="queued")
        assert retry.retry_of == done.id and done.result["retry"] == retry.id
