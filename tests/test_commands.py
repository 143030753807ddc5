"""The README's commands, and every command and option the issue list asks for, run as a user types them
(`tests/user_commands.py`): the exit code, the files written, no traceback, no framework noise, and what each
one is for. A test that calls the flow function cannot see a broken command line; these can."""

import json
import os
import re
import subprocess
import tomllib

import numpy as np
import pandas as pd
import pytest

from benchmarks.bench_startup import imported_packages
from tests.test_docs import ROOT, ablate_arguments, shell_commands
from tests.user_commands import COMMANDS, XSS_CLASS, Ran

# The frameworks' own messages, which stay out of the terminal unless --verbose: TensorFlow's C++ log lines
# (I/W/E + date), absl's notice, oneDNN's and CUDA's, and Great Expectations' INFO lines.
NOISE = re.compile(r"^(\[[^\]]+\] )?[IWE]\d{4} \d\d:\d\d:\d\d|absl::InitializeLog|oneDNN custom operations|"
                   r"failed call to cuInit|\| great_expectations\.", re.M)


def ran(user_runs, name: str) -> Ran:
    if name not in user_runs:
        pytest.skip("`make run` uses the project's .venv; run the tests with `make test` to include it")
    return user_runs[name]


def results(run: Ran) -> pd.DataFrame:
    (run_dir,) = run.run_dirs
    return pd.read_csv(run_dir / "results.csv")


def page(run: Ran) -> str:
    (run_dir,) = run.run_dirs
    return (run_dir / "index.html").read_text()


@pytest.mark.parametrize("command", COMMANDS, ids=[c.name for c in COMMANDS])
def test_the_command_runs_as_typed(user_runs, command):
    run = ran(user_runs, command.name)
    assert run.returncode == command.code, f"{' '.join(run.argv)}\n{run.output[-3000:]}"
    assert "Traceback" not in run.output
    if "--verbose" not in command.line:
        assert not NOISE.search(run.output), NOISE.search(run.output).group(0)
    if command.files:
        (run_dir,) = run.run_dirs  # one new run folder
        missing = [name for name in command.files if not (run_dir / name).exists()]
        assert not missing, missing
        assert f"report: {run_dir / 'index.html'}" in run.stdout
    else:
        assert run.run_dirs == []


def test_a_run_on_a_folder_of_photos_trains_every_cell_and_shows_a_class_named_like_markup_as_text(user_runs):
    run = ran(user_runs, "photos")
    table = results(run)
    assert len(table) == 6 and (table["status"] == "ok").all() and (table["epochs"] >= 1).all()
    html = page(run)
    assert XSS_CLASS not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    summary = json.loads((run.run_dirs[0] / "summary.json").read_text())
    assert summary["status"] == "done" and summary["dataset"] == "photos"
    first_screen = html[:html.index("<h2>")]  # photos of 500x375 train at the working resolution, and it says so
    assert ("trained at 128x96 (the working resolution: longest side capped at 128) from originals of 500x375 "
            "(most common of 4 sizes; 375x500 to 640x480)") in first_screen


def test_validate_on_the_photos_runs_the_gate_alone(user_runs):
    run = ran(user_runs, "validate")
    gate = json.loads((run.run_dirs[0] / "gate.json").read_text())
    assert gate["status"] in ("pass", "warn") and gate["images"] == 72
    flagged = {check["name"] for check in gate["checks"] if not check["success"]}
    assert not flagged & {"odd_sizes", "odd_aspect_ratios"}  # mixed photo sizes and orientations are normal
    assert not (run.run_dirs[0] / "results.csv").exists()


def test_the_readme_grid_example_trains_every_cell_of_the_file(user_runs):
    table = results(ran(user_runs, "grid example"))
    assert len(table) == 21 and (table["status"] == "ok").all()
    assert set(table["axis"]) == {"baseline", "learning_rate", "optimizer", "augmentation", "batch_norm"}
    assert {"optimizer adamw", "learning_rate 0.01", "augmentation flip+translate"} <= set(table["variant"])


def test_the_grid_listing_counts_the_cells_and_trains_nothing(user_runs):
    run = ran(user_runs, "grid listing")
    assert "7 variants x 3 seeds = 21 cells, mode one-factor, up to 10 epochs each" in run.stdout
    assert "estimated time: about" in run.stdout and not (run.home / "reports").exists()


def test_a_model_beside_the_user_is_the_baseline_and_variants_it_cannot_take_are_not_applicable(user_runs):
    run = ran(user_runs, "your model")
    table = results(run)
    status = table.groupby("axis")["status"].agg(set).to_dict()
    assert status == {"baseline": {"ok"}, "dropout": {"ok"}, "depth": {"not applicable"}}
    assert (table["model"] == "my_model:build_model").all()
    assert "Not applicable to this model" in page(run) and "takes no conv_filters" in page(run)


def test_the_aa_control_is_trained_again_and_shows_no_clear_difference(user_runs):
    run = ran(user_runs, "a/a control, British axis name")
    table = results(run)
    control, base = table[table["axis"] == "a/a control"], table[table["axis"] == "baseline"]
    assert len(control) == len(base) == 3 and (table["status"] == "ok").all()
    assert not np.allclose(control["test_accuracy"], base["test_accuracy"])  # really trained again
    html = page(run)
    assert "A/A control, the baseline trained twice" in html and "as it should" in html


def test_an_axis_in_british_spelling_is_reported_in_the_projects(user_runs):
    run = ran(user_runs, "a/a control, British axis name")
    assert set(results(run)["axis"]) == {"baseline", "normalization", "a/a control"}
    assert "normalisation" not in (run.run_dirs[0] / "results.csv").read_text()
    assert "<h2>Normalization</h2>" in page(run)


def test_an_npz_with_a_factorial_grid_in_yaml_crosses_its_axes(user_runs):
    run = ran(user_runs, "npz, factorial grid in YAML")
    table = results(run)
    assert len(table) == 4 * 2 and set(table["axis"]) == {"baseline", "factorial"} and (table["epochs"] == 1).all()
    assert (table["status"] == "ok").all()
    assert "learning_rate 0.01, optimizer sgd" in set(table["variant"])  # optimiser, spelled the project's way
    summary = json.loads((run.run_dirs[0] / "summary.json").read_text())
    assert summary["dataset"] == "my-data.npz" and "<h2>Factorial</h2>" in page(run)


def test_seeds_in_rounds_stop_a_broken_variant_after_the_first_and_confirm_the_combined_fixes(user_runs):
    run = ran(user_runs, "seeds in rounds, a broken learning rate, the follow-up grid")
    table = results(run)
    seeds = table[table["axis"] != "confirmation"].groupby("variant")["seed"].agg(set).to_dict()
    assert seeds["learning_rate 10.0"] == {0, 1, 2}  # broken in round 1: no second round
    assert seeds["baseline"] == seeds["learning_rate 0.003"] == seeds["batch_size 16"] == set(range(5))
    confirmation = table[table["axis"] == "confirmation"]
    # the best single change (which of the two fixes helps more is the data's call), then both combined
    fixes = {"batch_size 16", "learning_rate 0.003"}
    (best,) = set(confirmation["variant"]) & fixes
    (other,) = fixes - {best}
    assert set(confirmation["variant"]) == {"baseline", best, f"combined: {best} + {other}"}
    assert set(confirmation["seed"]) == set(range(5, 10))  # fresh seeds, five as the best change had
    assert "after round 1: 1 settled (1 broken), 2 still open" in run.output
    html = page(run)
    first_screen = html[:html.index("<h2>")]
    assert "learning_rate 10.0 <small>(learning rate)</small> is broken: it ended at chance" in first_screen
    assert "(no more seeds after its first round)" in first_screen
    assert "Recommended configuration" in first_screen and "measured on 5 fresh seeds" in first_screen
    assert "looked at after 3, 5 seeds" in first_screen
    follow = tomllib.loads((run.home / "next.toml").read_text())
    assert follow["baseline"] == {"epochs": 3, "learning_rate": 0.003, "batch_size": 16}
    assert follow["seeds"] == "auto" and follow["max_seeds"] == 5
    assert "follow-up grid: next.toml" in run.stdout
    assert (run.run_dirs[0] / "next.toml").read_text() == (run.home / "next.toml").read_text()


def test_each_rounds_task_runs_carry_the_rounds_tag_in_prefect(user_runs, prefect_server):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    run = ran(user_runs, "seeds in rounds, a broken learning rate, the follow-up grid")
    flow_run = json.loads((run.run_dirs[0] / "summary.json").read_text())["flow_run_id"]
    with get_client(sync_client=True) as client:
        task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run])))
    tags = {}
    for task_run in task_runs:
        if task_run.name.startswith("train "):
            tags.setdefault(task_run.name.split(": ")[0].removeprefix("train "), set()).update(task_run.tags)
    assert {"round 1", "round 2"} <= tags["learning_rate"] | tags["baseline"] and tags["confirmation"] == {
        "confirmation"}
    assert "round 2" not in {tag for task_run in task_runs if "10.0" in task_run.name for tag in task_run.tags}


def test_the_same_rounds_run_again_resumes_from_its_cells_and_trains_nothing(user_runs, prefect_server):
    """Started again after it ended (or was interrupted), the run reaches the same rounds from its cached cells."""
    run = ran(user_runs, "seeds in rounds, a broken learning rate, the follow-up grid")
    again = subprocess.run(run.argv, cwd=run.home, capture_output=True, text=True, timeout=300,
                           env=os.environ | {"PREFECT_API_URL": prefect_server, "PYTHONPROFILEIMPORTTIME": "1"})
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"reused {len(results(run))} of {len(results(run))} training runs" in again.stdout
    assert "training none (every cell reused)" in again.stdout and "round 2 of 2" in again.stdout + again.stderr
    # nothing to validate or train: the command imports neither Great Expectations nor the framework
    assert not set(imported_packages(again.stderr)) & {"great_expectations", "keras", "tensorflow"}


def test_gate_warn_trains_on_the_readable_images_and_names_the_broken_one(user_runs):
    run = ran(user_runs, "gate warn on a broken file")
    table = results(run)
    assert len(table) == 3 and (table["status"] != "failed").all()
    gate = json.loads((run.run_dirs[0] / "gate.json").read_text())
    readable = next(c for c in gate["checks"] if c["name"] == "readable_files")
    assert gate["status"] == "fail" and readable["offending"] == ["train/cats/truncated.jpg"]


def test_verbose_shows_the_frameworks_messages_from_each_training_process(user_runs):
    run = ran(user_runs, "python -m flows.ablation, verbose")
    assert re.search(r"\[slot-\d\] training process \d+", run.output)  # followed from its log file
    assert NOISE.search(run.output)  # TensorFlow's own lines, asked for
    assert (results(run)["status"] == "ok").all()


def test_the_gate_flow_as_a_module_writes_where_a_relative_out_points(user_runs):
    run = ran(user_runs, "python -m flows.data_quality_gate, relative --out")
    (run_dir,) = run.run_dirs
    assert run_dir.parent == run.home / "my-reports"


def test_make_run_trains_with_the_local_prefect_server_it_starts(user_runs):
    run = ran(user_runs, "make run")
    assert (results(run)["status"] == "ok").all()
    # No PREFECT_API_URL: the first command starts the local server (and the table stops it after the row).
    assert "started the local Prefect server http://127.0.0.1:" in run.output
    assert "temporary server" not in run.output


def test_every_command_the_readme_shows_is_in_the_table():
    readme = [command for command in shell_commands((ROOT / "README.md").read_text())
              if ablate_arguments(command) is not None]
    assert readme and set(readme) <= {c.line for c in COMMANDS}, set(readme) - {c.line for c in COMMANDS}


def test_the_table_covers_every_command_and_option_the_issue_lists():
    typed = [c.line for c in COMMANDS]
    for needed in ("ablate run --grid", "ablate run --model", "ablate run --aa", "--axes", "ablate grid ",
                   "ablate validate ", "python -m flows.ablation", "python -m flows.data_quality_gate",
                   "--dataset path/to/photos", "--dataset my-data.npz", "make run", "--verbose", "--next"):
        assert any(needed in line for line in typed), needed
