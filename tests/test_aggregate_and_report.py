import math
import re

import numpy as np
import pytest

from tasks.gate.expectations import CheckResult, GateResult
from tasks.report.aggregate import (
    HELPS,
    HURTS,
    NO_CONFIDENCE,
    UNCLEAR,
    mean_curves,
    judge,
    results_table,
    summarise,
    verdict,
)
from tasks.report.page import render_report
from tasks.training.grid import expand_grid
from tasks.training.train import failed_record


def fake_records(seeds=3, gains=None, failed=()):
    """Records as training returns them; ``gains`` shifts a variant's accuracy (per seed) from the baseline's."""
    gains = gains or {}
    records = []
    for cell in expand_grid(seeds=seeds, epochs=3):
        record = cell.to_dict()
        if cell.key in failed:
            records.append(failed_record(record, "training process was killed") | {"worker": "slot-0"})
            continue
        base = 0.80 + 0.01 * cell.config.seed
        best = base + gains.get(cell.variant, 0.0) + (0.002 * cell.config.seed if cell.variant in gains else 0.0)
        curve = [best - 0.1, best - 0.02, best]
        records.append(record | {"status": "ok", "error": "", "error_detail": "", "test_accuracy": best,
                                 "val_accuracy_at_best": best + 0.01, "best_epoch": 3, "final_val_accuracy": best,
                                 "final_train_accuracy": best + 0.05, "epochs": 3,
                                 "seconds": 1.5, "worker": f"slot-{cell.config.seed % 2}",
                                 "history": {"accuracy": curve, "val_accuracy": curve, "loss": [1, 0.5, 0.4],
                                             "val_loss": [1, 0.6, 0.5]}})
    return records


def test_labels_come_from_the_adjusted_test_and_the_interval_is_at_the_level_it_was_tested_at():
    assert judge(np.array([0.05, 0.06, 0.055]), True, 0.0125, 0.01)["effect"] == HELPS
    assert judge(np.array([-0.05, -0.06, -0.055]), True, 0.0125, 0.01)["effect"] == HURTS
    from tasks.report.statistics import holm, paired_p

    small = np.array([0.02, 0.03, 0.025])  # p = 0.013 alone; one of eight comparisons, it is not enough
    assert paired_p(small)[1] < 0.05
    adjusted, level = holm([paired_p(small)[1]] + [0.5] * 7)[0]
    kept = judge(small, adjusted < 0.05, level, adjusted)
    assert kept["effect"] == UNCLEAR and kept["ci_low"] < 0 < kept["ci_high"] and kept["seeds_needed"] > 3
    one = judge(np.array([0.3]), False, math.nan)
    assert one["effect"] == NO_CONFIDENCE and math.isnan(one["ci_low"])


def test_t_interval_matches_the_textbook_value():
    effect = judge(np.array([1.0, 2.0, 3.0]) / 100, False, 0.05, 0.2)
    half = 4.302652729911275 * 1.0 / math.sqrt(3) / 100  # t(0.975, 2) * sd / sqrt(n)
    assert effect["ci_low"] == pytest.approx(0.02 - half) and effect["ci_high"] == pytest.approx(0.02 + half)


def test_summary_and_verdict_find_the_change_that_helps():
    records = fake_records(gains={"standardize": 0.06, "lr 1e-4": -0.2})
    summary = summarise(results_table(records))
    assert len(summary) == 9
    row = summary.set_index("variant").loc["standardize"]
    assert row["effect"] == HELPS and row["delta"] == pytest.approx(0.062)
    outcome = verdict(summary)
    assert outcome.helps[0]["variant"] == "standardize" and "standardize" in outcome.headline
    assert [r["variant"] for r in outcome.hurts] == ["lr 1e-4"]
    assert len(outcome.unclear) == 6


def test_verdict_says_so_when_nothing_helps_and_with_one_seed():
    outcome = verdict(summarise(results_table(fake_records(seeds=1, gains={"dropout 0": 0.01}))))
    assert "No change clearly beats the baseline" in outcome.headline and not outcome.helps
    assert any("one seed" in note for note in outcome.notes)


def test_failed_cells_are_left_out_and_counted():
    records = fake_records(failed={"depth/1 block x16/seed0"})
    summary = summarise(results_table(records)).set_index("variant")
    assert summary.loc["1 block x16", "failed"] == 1 and summary.loc["1 block x16", "scored"] == 2
    assert summary.loc["1 block x16", "pairs"] == 2


def test_results_table_has_the_documented_columns_first():
    table = results_table(fake_records(seeds=1))
    assert list(table.columns[:11]) == ["axis", "variant", "seed", "status", "test_accuracy", "val_accuracy_at_best",
                                        "best_epoch", "final_val_accuracy", "final_train_accuracy", "epochs",
                                        "seconds"]


def test_mean_curves_pad_early_stopped_runs():
    records = fake_records(seeds=2)
    records[0]["history"] = {k: v[:2] for k, v in records[0]["history"].items()}
    curve = mean_curves(records)[("baseline", "baseline")]["val_accuracy"]
    assert len(curve) == 3 and curve[2] == pytest.approx(records[1]["history"]["val_accuracy"][2])


RUN = {"run_id": "20261128-000000-digits", "dataset": "digits", "status": "done", "started": "now",
       "data": {"training images": 100}, "timings": {"loading": 1.0}, "parameters": {"epochs": 3}}


def test_report_puts_the_verdict_first_holds_every_variant_and_is_self_contained():
    records = fake_records(gains={"standardize": 0.06})
    results = results_table(records)
    summary = summarise(results)
    gate = GateResult("pass", [CheckResult("no_nan_pixels", "critical", True, "0 of 100 images", "why")], 100)
    warned = RUN | {"warnings": ["Your model prepares its own input (Rescaling(scale=0.00392, offset=0))"],
                    "parameters": {"val_fraction": 0.2, "fixed_split": False}}
    page = render_report(warned, gate, summary, verdict(summary), mean_curves(records), results)
    assert page.index("helps most") < page.index("Data-quality gate")
    assert page.index("Your model prepares its own input") < page.index("Data-quality gate")  # the first screen
    assert "less a validation share (20% of it, stratified)" in page and "the validation share (--fixed-split" in page
    assert "beats the baseline on 100% of seeds [" in page  # P(variant > baseline) with its interval
    for variant in summary["variant"]:
        assert variant in page
    assert page.count("data:image/png;base64,") == 8  # per axis: the effects with intervals, the curves
    assert not re.search(r"(src|href)=['\"]?(https?:)?//", page)


def test_report_of_a_failed_gate_explains_it_and_names_images():
    check = CheckResult("one_pixel_scale", "critical", False, "2 of 100 images (values: 0-1)", "Rescale them.",
                        ["train/a/1.png", "train/b/2.png"], 2)
    gate = GateResult("fail", [check], 100, "/x/data_docs/index.html")
    run = RUN | {"status": "gate failed", "error": "the data-quality gate failed: one pixel scale",
                 "data_docs_link": "data_docs/index.html"}
    page = render_report(run, gate, None, None, None, None)
    assert "Training stopped: the data-quality gate failed" in page
    assert "train/a/1.png" in page and "data_docs/index.html" in page


def test_the_paired_test_is_a_t_test_from_three_seeds_and_the_exact_sign_flip_test_for_two():
    from scipy import stats

    from tasks.report.statistics import paired_p

    differences = np.array([0.01, 0.02, 0.035, -0.005])
    assert paired_p(differences) == ("paired t-test", pytest.approx(stats.ttest_1samp(differences, 0).pvalue))
    assert paired_p(np.array([0.01, 0.02])) == ("exact sign-flip", pytest.approx(0.5))


def test_every_variant_gets_an_interval_of_its_mean_accuracy_inside_0_to_1():
    summary = summarise(results_table(fake_records(seeds=3)))
    base = summary[summary["axis"] == "baseline"].iloc[0]
    values = np.array([0.80, 0.81, 0.82])  # fake_records' baseline accuracies for seeds 0..2
    logits = np.log(values / (1 - values))
    half = 4.302652729911275 * logits.std(ddof=1) / math.sqrt(3)  # t(0.975, 2), on the logit scale
    assert base["test_ci_low"] == pytest.approx(1 / (1 + np.exp(-(logits.mean() - half))))
    assert base["test_ci_high"] == pytest.approx(1 / (1 + np.exp(-(logits.mean() + half))))
    assert 0 < summary["test_ci_low"].min() and summary["test_ci_high"].max() < 1
    assert set(summary["test"].dropna()) <= {"", "paired t-test", "exact sign-flip"}  # no gain: no spread either


def test_the_aa_control_is_the_baseline_trained_again_independently_and_kept_out_of_the_changes():
    from tasks.training.grid import AA_AXIS

    cells = expand_grid(axes=["dropout"], seeds=2, epochs=3, aa=True)
    control = [c for c in cells if c.axis == AA_AXIS]
    baseline = [c for c in cells if c.axis == "baseline"]
    assert len(control) == 2 and [c.config.seed for c in control] == [0, 1]  # paired with the baseline's seeds
    assert all(c.config.random_seed != b.config.random_seed for c, b in zip(control, baseline))
    from dataclasses import replace

    assert replace(control[0].config, run_copy=0) == baseline[0].config  # the same config otherwise
    records = fake_records(seeds=3, gains={"dropout 0": 0.05})
    for cell in expand_grid(axes=[], seeds=3, epochs=3, aa=True)[3:]:
        noise = [0.004, -0.003, 0.001][cell.config.seed]
        records.append(next(r for r in records if r["axis"] == "baseline" and r["seed"] == cell.config.seed)
                       | cell.to_dict() | {"test_accuracy": 0.80 + 0.01 * cell.config.seed + noise})
    summary = summarise(results_table(records))
    outcome = verdict(summary)
    assert outcome.control is not None and outcome.control["effect"] == UNCLEAR
    assert AA_AXIS not in {r["axis"] for r in outcome.helps + outcome.hurts + outcome.unclear}
    page = render_report({"dataset": "d", "run_id": "r", "status": "done"}, None, summary, outcome,
                         mean_curves(records), results_table(records))
    assert "A/A control, the baseline trained twice" in page and "as it should" in page


def test_gate_findings_are_tied_to_the_effects_they_explain():
    from tasks.report.explain import gate_links

    summary = summarise(results_table(fake_records(seeds=3, gains={"raw 0-255": -0.2})))
    links = gate_links({"one_pixel_scale", "train_test_leakage"}, summary)
    assert any("normalization axis confirms" in link and "raw 0-255 hurts" in link for link in links)
    assert any("inflated" in link for link in links)
    assert gate_links(set(), summary) == []
    assert "bring every image to one scale" in gate_links({"one_dtype"}, summarise(results_table(fake_records())))[0]


def test_the_report_shows_each_variants_diagnoses_under_its_axis():
    from tasks.report.diagnose import diagnose_all

    records = fake_records(seeds=2)
    for record in records:
        if record["variant"] == "lr 1e-2":
            record["history"]["val_accuracy"] = [0.1, 0.1, 0.1]  # 10 classes: chance
    diagnoses = diagnose_all(records, classes=10, max_epochs=5)
    assert [d.kind for d in diagnoses[("learning_rate", "lr 1e-2")]] == ["chance", "early stopping"]
    summary = summarise(results_table(records))
    page = render_report({"dataset": "d", "run_id": "r", "status": "done"}, None, summary, verdict(summary),
                         mean_curves(records), results_table(records), None, diagnoses)
    section = page[page.index("<h2>Learning rate"):]
    assert "<b>lr 1e-2</b>: Stuck at chance: best validation accuracy 10% against 10%" in section


def test_history_table_is_tidy_one_row_per_cell_and_epoch():
    from tasks.report.aggregate import history_table

    records = fake_records(seeds=2, failed={"dropout/dropout 0/seed1"})
    table = history_table(records)
    trained = [r for r in records if r["status"] == "ok"]
    assert len(table) == 3 * len(trained)  # fake runs have three epochs; the failed cell has none
    assert list(table.columns) == ["axis", "variant", "seed", "epoch", "accuracy", "val_accuracy", "loss", "val_loss"]
    first = table[(table["variant"] == "baseline") & (table["seed"] == 1)]
    assert first["epoch"].tolist() == [1, 2, 3] and first["loss"].tolist() == [1, 0.5, 0.4]


def test_the_best_change_section_has_confusion_matrices_and_the_images_the_change_fixed():
    from tasks.data.datasets import load_dataset

    data = load_dataset("digits", limit=60)
    truth = data.y_test
    records = fake_records(seeds=2, gains={"standardize": 0.06})
    summary = summarise(results_table(records))
    wrong_first_five = np.where(np.arange(len(truth)) < 5, (truth + 1) % 10, truth)
    wrong_tenth = np.where(np.arange(len(truth)) == 10, (truth + 3) % 10, truth)
    predictions = {("baseline", "baseline", 0): wrong_first_five.tolist(),
                   ("normalization", "standardize", 0): wrong_tenth.tolist()}
    results = results_table(records)
    page = render_report(RUN, None, summary, verdict(summary), mean_curves(records), results, data, None, predictions)
    section = page[page.index("<h2>Best change"):page.index("<h2>All training runs")]
    assert section.startswith("<h2>Best change against the baseline: standardize</h2>")
    assert "gets 5 validation image(s) right that the baseline got wrong, and 1 wrong" in section
    assert section.count("<figure>") == 5 and "confusion matrices" in section
    assert f"baseline said {data.class_names[(truth[0] + 1) % 10]}" in section


def test_the_runs_index_lists_every_run_newest_first_and_charts_each_deployment(tmp_path):
    import json

    from tasks.report.runs import write_runs_index

    def run(name, started, deployment, base, gain, dataset="digits", accuracy="mean_test"):
        (tmp_path / name).mkdir()
        best = {"axis": "dropout", "variant": "dropout 0.5", "delta": gain, "ci_low": gain / 2,
                "ci_high": gain * 1.5, accuracy: base + gain} if gain else None
        (tmp_path / name / "summary.json").write_text(json.dumps(
            {"dataset": dataset, "status": "done", "started": started, "headline": f"headline {name}",
             "gate": "pass", "deployment": deployment, "baseline_accuracy": base, "best": best}))

    # written before the test split was scored once: its best variant's accuracy is "mean_best"
    run("20261101-020000-digits", "2026-11-01 02:00 UTC", "ablation-nightly", 0.90, 0.02, accuracy="mean_best")
    run("20261102-020000-digits", "2026-11-02 02:00 UTC", "ablation-nightly", 0.91, None)
    run("20261102-093000-<b>x", "2026-11-02 09:30 UTC", None, 0.5, 0.1, dataset="<img src=x>")
    (tmp_path / "20261103-000000-broken").mkdir()
    (tmp_path / "20261103-000000-broken" / "summary.json").write_text("{not json")
    page = write_runs_index(tmp_path).read_text()
    order = [page.index(name) for name in ("20261102-093000", "20261102-020000", "20261101-020000")]
    assert order == sorted(order)  # newest first; the unreadable summary is left out
    assert "broken" not in page and "<img src=x>" not in page and "&lt;img src=x&gt;" in page
    assert "<b>x" not in page and "&lt;b&gt;x" in page
    assert "dropout 0.5: +2.0 points" in page and "91.0%" in page
    assert page.count("data:image/png;base64,") == 1 and "<h2>ablation-nightly</h2>" in page  # ad hoc: no chart


def test_the_verdict_and_the_gate_as_markdown_for_prefects_ui():
    from tasks.report.markdown import gate_markdown, verdict_markdown

    summary = summarise(results_table(fake_records(gains={"standardize": 0.06})))
    text = verdict_markdown(verdict(summary), "pass", "/r/index.html")
    assert text.startswith("### standardize (normalization) helps most")
    assert "- **standardize** (normalization): helps, +6.2 points (99.4% CI" in text  # 1 - 0.05 / 8 changes
    assert "Data-quality gate: **pass**" in text and text.endswith("Report: `/r/index.html`")
    gate = GateResult("fail", [CheckResult("one_pixel_scale", "critical", False, "3 of 100 images", "why",
                                           ["train/a/1.png", "train/a/2.png"], 3),
                               CheckResult("no_nan_pixels", "critical", True, "0 of 100 images", "why")], 100)
    text = gate_markdown(gate)
    assert text.startswith("### Data-quality gate: fail") and "1 not passed" in text
    assert "- **one pixel scale** (critical): 3 of 100 images (e.g. `train/a/1.png`, `train/a/2.png`)" in text


def test_a_grid_files_own_axis_names_its_baseline_plainly_in_the_table_and_the_legend(monkeypatch):
    from tasks.report import page

    records = [r | {"axis": "factorial", "variant": f"lr {r['variant']}"} if r["axis"] != "baseline" else r
               for r in fake_records(seeds=2) if r["axis"] in ("baseline", "dropout")]
    summary = summarise(results_table(records))
    legends = []
    monkeypatch.setattr(page, "curves_png", lambda curves: legends.append([label for label, _ in curves]))
    view = page.axis_view("factorial", summary, mean_curves(records), {})
    assert view["rows"][0]["name"] == "baseline" and legends == [["baseline", "lr dropout 0", "lr dropout 0.5"]]
    view = page.axis_view("dropout", summarise(results_table(fake_records(seeds=2))), {}, {})
    assert [row["name"] for row in view["rows"]][:2] == ["dropout 0", "dropout 0.2 (baseline)"]


def test_nothing_compared_says_why_in_one_sentence_with_what_to_try():
    from tasks.report.aggregate import nothing_compared

    killed = "training process was killed (SIGKILL: most often the machine ran out of memory)"
    base = [{"axis": "baseline", "variant": "baseline", "status": "failed", "error": killed} for _ in range(3)]
    change = [{"axis": "dropout", "variant": "dropout 0", "status": "ok", "error": ""}]
    assert nothing_compared(base + change) == (
        f"Nothing could be compared: the baseline failed on every seed ({killed}); it ran out of memory: try a "
        "smaller --image-size (64, say) or fewer training processes (--processes 1).")
    everything = [r | {"status": "failed", "error": "ValueError: bad"} for r in base + change]
    assert nothing_compared(everything) == "Nothing could be compared: every training run failed (ValueError: bad)."
    assert nothing_compared(base[:2] + [base[2] | {"status": "ok"}] + change) is None


def test_an_unclear_change_says_how_many_seeds_would_tell():
    from tasks.report.page import unclear_words

    summary = summarise(results_table(fake_records(gains={"dropout 0.5": 0.004})))  # small, against 0.2 points
    row = summary.set_index("variant").loc["dropout 0.5"].to_dict() | {"variant": "dropout 0.5"}
    assert row["effect"] == UNCLEAR and row["seeds_needed"] > 3
    assert unclear_words(row) == f"dropout 0.5 (+0.6 points; ~{int(row['seeds_needed'])} seeds would tell at 80% power)"


def test_two_seeds_cannot_support_a_claim_and_the_first_screen_says_so_with_the_seeds_needed():
    records = fake_records(seeds=2, gains={"standardize": 0.2})
    summary = summarise(results_table(records))
    outcome = verdict(summary)
    assert outcome.helps == [] and len(outcome.caveats) == 1
    assert "With 2 seeds no claim is possible" in outcome.caveats[0] and "9 seeds would be needed" in outcome.caveats[0]
    page = render_report(RUN, None, summary, outcome, mean_curves(records), results_table(records))
    assert page.index("With 2 seeds no claim is possible") < page.index("All training runs")
