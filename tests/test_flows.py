"""End-to-end flow runs on a real Prefect server (the session's test harness), training for real on tiny slices."""

import json
import re
from dataclasses import replace

import numpy as np
import pandas as pd
import psutil
import pytest

from flows.ablation import ablation
from flows.data_quality_gate import data_quality_gate
from tasks.errors import GateFailed
from tasks.training.grid import expand_grid
from tests.conftest import write_npz


def test_ablation_end_to_end_on_a_digits_slice(prefect_server, tmp_path):
    summary = ablation(dataset="digits", epochs=1, seeds=2, limit=100, out=tmp_path)
    run_dir = tmp_path / summary["run_dir"].split("/")[-1]
    page = (run_dir / "index.html").read_text()
    results = pd.read_csv(run_dir / "results.csv")
    expected = {(c.axis, c.variant, c.config.seed) for c in expand_grid(seeds=2, epochs=1)}
    assert set(zip(results["axis"], results["variant"], results["seed"])) == expected
    assert (results["status"] == "ok").all() and results["test_accuracy"].between(0, 1).all()
    for variant in results["variant"].unique():
        assert variant in page
    assert page.index("class='verdict") < page.index("Data-quality gate")
    assert (run_dir / "data_docs" / "index.html").exists() and (run_dir / "gate.json").exists()
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "done"
    assert "report" in summary["timings"] and summary["timings"]["training (inside processes, summed)"] > 0
    assert (tmp_path / "index.html").exists()  # the index of runs
    assert len(list((run_dir / "cells").glob("*/history.csv"))) == len(results)  # Keras' CSVLogger, per cell
    assert len(pd.read_csv(run_dir / "history.csv")) == results["epochs"].sum()  # tidy: a row per cell and epoch
    assert summary["flow_run_id"] in page and "Keras backend" in page and "TensorFlow" in page  # run facts
    assert "Best change against the baseline" in page and "Images the change fixed" in page
    # the models kept are the variant validation chose, never the test split
    means = results[results["status"] == "ok"].groupby(["axis", "variant"])["val_accuracy_at_best"].mean()
    slugs = {f"{c.slug}.keras": (c.axis, c.variant) for c in expand_grid(seeds=2, epochs=1)}
    kept = {slugs[p.name] for p in (run_dir / "models").glob("*.keras")}
    assert len(list((run_dir / "models").glob("*.keras"))) == 2  # both seeds of one variant: the best one
    assert len(kept) == 1 and means[next(iter(kept))] == means.max()
    assert published_artifacts() >= {"ablation-results", "ablation-report", "data-quality-gate",
                                     "data-quality-gate-docs", "ablation-progress"}
    assert progress_of("ablation-progress") == 100.0

    # The same command again reuses every finished cell: no training process starts.
    again = ablation(dataset="digits", epochs=1, seeds=2, limit=100, out=tmp_path)
    again_dir = tmp_path / again["run_dir"].split("/")[-1]
    assert again["cached"] == again["cells"] == len(results) and not (again_dir / "logs").exists()
    reused = pd.read_csv(again_dir / "results.csv")
    assert reused["cached"].all() and reused["test_accuracy"].tolist() == results["test_accuracy"].tolist()
    assert "(cached)" in (again_dir / "index.html").read_text()
    # --fresh trains again (another epoch count is another cell too: tests/test_cell_cache.py).
    assert ablation(dataset="digits", epochs=1, seeds=1, limit=100, axes=["dropout"], out=tmp_path,
                    fresh=True)["cached"] == 0


def published_artifacts() -> set[str]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return {artifact.key for artifact in client.read_artifacts()}


def progress_of(key: str) -> float:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        (artifact,) = client.read_latest_artifacts(limit=1, artifact_filter=_key_filter(key))
        return float(artifact.data)


def _key_filter(key: str):
    from prefect.client.schemas.filters import ArtifactCollectionFilter, ArtifactCollectionFilterKey

    return ArtifactCollectionFilter(key=ArtifactCollectionFilterKey(any_=[key]))


def mixed_scale_npz(tmp_path):
    x = np.random.default_rng(0).uniform(0, 255, (40, 10, 10, 1)).astype(np.float32)
    x[:4] /= 255.0  # four images on the 0-1 scale
    return write_npz(tmp_path / "mixed.npz", x_train=x, y_train=np.arange(40) % 2,
                     x_test=x[20:].copy(), y_test=np.arange(20) % 2)


def test_a_critical_gate_failure_stops_the_training_beside_it_and_the_report_explains(prefect_server, tmp_path):
    # The first cells train while the gate validates. These could not finish (10,000 epochs, no early stop): the
    # run ending at once shows that the failed gate stopped them (were it not so, a minute's time limit would
    # fail them, and they would be recorded).
    with pytest.raises(GateFailed) as failure:
        ablation(dataset=str(mixed_scale_npz(tmp_path)), epochs=10_000, seeds=1, axes=["dropout"],
                 settings={"patience": 10_000}, cell_timeout=60, out=tmp_path / "r")
    page_path = failure.value.report_path
    page = open(page_path).read()
    assert "Training stopped: the data-quality gate failed" in page
    assert "x_train[0]" in page and "one pixel scale" in page
    assert page.index("one pixel scale") < page.index("Data-quality gate") < page.index("<figcaption>x_train[0]")
    run_dir = tmp_path / "r" / page_path.split("/")[-2]
    assert not (run_dir / "results.csv").exists()
    assert (run_dir / "cells.jsonl").read_text() == ""  # the stopped cells are not recorded as failures
    assert not list((tmp_path / "r" / ".cache" / "cells").glob("*.json"))  # nor kept
    pids = [int(re.search(r"training process (\d+)", log.read_text()).group(1))
            for log in (run_dir / "logs").glob("*.log")]
    assert pids and not [pid for pid in pids if psutil.pid_exists(pid)], "training processes left running"
    # Again: the gate's kept result fails at once, often before the training processes start (then none does).
    with pytest.raises(GateFailed) as again:
        ablation(dataset=str(mixed_scale_npz(tmp_path)), epochs=10_000, seeds=1, axes=["dropout"],
                 settings={"patience": 10_000}, cell_timeout=60, out=tmp_path / "r")
    again_dir = tmp_path / "r" / again.value.report_path.split("/")[-2]
    assert (again_dir / "cells.jsonl").read_text() == "" and not (again_dir / "results.csv").exists()


def test_data_quality_gate_flow_alone(prefect_server, tmp_path):
    summary = data_quality_gate(dataset="digits", limit=50, out=tmp_path)
    assert summary["status"] == "pass"
    gate = json.loads(open(f"{summary['run_dir']}/gate.json").read())
    assert gate["images"] == 100 and all(check["success"] for check in gate["checks"])


def test_a_crashed_cell_is_retried_once_and_a_timed_out_one_is_not(prefect_server, tmp_path):
    import os
    import signal
    import threading
    import time

    from prefect import flow

    from flows.steps import train_cell_step
    from tasks.data.datasets import load_dataset
    from tasks.data.store import save_cache
    from tasks.training.devices import SlotSpec
    from tasks.training.slots import SlotPool

    dataset = str(save_cache(load_dataset("digits", limit=40), tmp_path / "cache"))
    (cell,) = [c for c in expand_grid(["dropout"], seeds=1, epochs=10_000) if c.axis == "baseline"]
    cell = replace(cell, config=replace(cell.config, patience=10_000))  # trains until stopped
    log = tmp_path / "logs" / "slot-0.log"

    def kill_on_first_start(pool):
        while "started" not in (log.read_text() if log.exists() else ""):
            time.sleep(0.2)
        os.kill(pool.pids()[0], signal.SIGKILL)

    @flow
    def one_cell():
        with SlotPool([SlotSpec(0, "cpu", 1)], tmp_path / "logs") as pool:
            threading.Thread(target=kill_on_first_start, args=(pool,), daemon=True).start()
            return train_cell_step(cell, dataset, pool, tmp_path / "cell", tmp_path / "m.keras", timeout=4, retries=1)

    record = one_cell()
    assert record["status"] == "failed" and "timed out after 4 s" in record["error"]
    assert log.read_text().count(": started") == 2  # killed once, retried once, then stopped by the time limit


def test_progress_line_counts_done_running_failed_cached_and_time():
    from flows.fan_out import progress_line

    ok = {"axis": "depth", "variant": "1 block x16", "seed": 1, "status": "ok", "test_accuracy": 0.961,
          "seconds": 4.2}
    failed = ok | {"status": "failed", "error": "timed out after 5 s"}
    line = progress_line([ok, failed, ok], total=10, elapsed=30.0, cached=3, slots=2)
    assert line == ("[3/10] depth: 1 block x16 seed 1 ok, test acc 96.1% (4.2 s) | 2 running | 1 failed | "
                    "3 cached | 30 s elapsed, ~70 s left")
    assert progress_line([ok], total=1, elapsed=4.0).endswith("| 4 s elapsed")


def test_a_user_model_that_does_not_fit_the_data_stops_the_run_before_training(prefect_server, tmp_path, capsys):
    from flows.cli import main

    code = main(["run", "--model", "tests.user_models:wrong_classes", "--limit", "60", "--epochs", "1",
                 "--out", str(tmp_path)])
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and error[-1] == ("ablate: error: --model tests.user_models:wrong_classes outputs shape (3,) "
                                       "per image; the data has 10 classes, so it must output (10,)")
    assert not [p for p in tmp_path.iterdir() if not p.name.startswith(".")]  # no run folder: nothing trained
