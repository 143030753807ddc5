"""The recommended configuration, broken variants and the rounds' next cells, on records made up for each case
(the real runs are in tests/test_commands.py)."""

import math
import tomllib
from dataclasses import replace

import numpy as np
import pytest

from tasks.report.aggregate import HELPS, results_table, summarise, verdict
from tasks.report.diagnose import broken_variants
from tasks.report.page import render_report
from tasks.report.recommend import cli_flags, combination, config_of, recommend, settings_block
from tasks.report.rounds import confirmation_round, next_round
from tasks.report.sequential import BROKEN, DECIDED
from tasks.training.grid import BASELINE, CONFIRM_AXIS, Cell, grid_variants, looks, seeded
from tasks.training.grid_file import baseline_config, follow_up, load_grid, parse_setting

BASE = replace(BASELINE, learning_rate=3e-4, batch_size=128, max_epochs=3)
VARIANTS = grid_variants(["learning_rate", "batch_size"], 3, BASE)  # lr 1e-2, 1e-3, 1e-4; batch 16, 32


def record(cell: Cell, accuracy: float, loss=(1.0, 0.6, 0.4), status="ok") -> dict:
    return cell.to_dict() | {"status": status, "error": "", "error_detail": "", "test_accuracy": accuracy,
                             "val_accuracy_at_best": accuracy, "best_epoch": 3, "final_val_accuracy": accuracy,
                             "final_train_accuracy": accuracy, "epochs": 3, "seconds": 1.0, "worker": "slot-0",
                             "history": {"accuracy": [accuracy] * 3, "val_accuracy": [accuracy] * 3,
                                         "loss": list(loss), "val_loss": list(loss)}}


def records_for(cells, gains: dict[str, float], noise=0.004, broken=()):
    """Accuracy 0.6 plus the variant's gain, plus a little noise per seed; ``broken`` variants diverge."""
    rng = np.random.default_rng(0)
    out = []
    for cell in cells:
        if cell.variant in broken:
            out.append(record(cell, 0.1, (2.3, float("nan"), float("nan")), "diverged"))
        else:
            out.append(record(cell, 0.6 + gains.get(cell.variant, 0.0) + rng.normal(0, noise)))
    return out


def one_factor(gains, seeds=4, broken=()):
    return records_for(seeded(VARIANTS, range(seeds)), gains, broken=broken)


def with_confirmation(records, gains_confirmed, seeds=None):
    cells = confirmation_round(records, None, seeds or 4, 10)
    return records + records_for(cells, gains_confirmed)


def test_two_helping_changes_are_combined_and_confirmed_on_seeds_the_one_factor_pass_did_not_use():
    records = one_factor({"lr 1e-3": 0.10, "lr 1e-2": 0.05, "batch 16": 0.08})
    cells = confirmation_round(records, None, 4, 10)
    assert {c.variant for c in cells} == {"baseline", "lr 1e-3", "combined: lr 1e-3 + batch 16"}
    assert {c.config.seed for c in cells} == {4, 5, 6, 7} and all(c.axis == CONFIRM_AXIS for c in cells)
    combined = next(c for c in cells if c.variant.startswith("combined")).config
    assert (combined.learning_rate, combined.batch_size, combined.max_epochs) == (1e-3, 16, 3)
    names = {c.variant: c for c in cells}
    confirmed = with_confirmation(records, {"lr 1e-3": 0.10, "combined: lr 1e-3 + batch 16": 0.15})
    results = results_table(confirmed)
    summary = summarise(results)
    assert len(summary) == len(VARIANTS)  # the confirmation is not one of the one-factor comparisons
    advice = recommend(summary, results)
    assert advice.changes == ["lr 1e-3", "batch 16"] and advice.confirmed and not advice.warning
    assert advice.config == replace(names["combined: lr 1e-3 + batch 16"].config, seed=0)
    assert advice.gain["effect"] == HELPS and advice.gain["delta"] == pytest.approx(0.15, abs=0.01)
    assert advice.gain["pairs"] == 4 and advice.gain["against"] == "baseline"
    page = render_report({"dataset": "d", "run_id": "r", "status": "done"}, None, summary,
                         replace(verdict(summary), recommendation=advice), None, results)
    first_screen = page[:page.index("<h2>")]
    assert "Recommended configuration" in first_screen and "learning_rate = 0.001" in first_screen
    assert "--set learning_rate=0.001 --set batch_size=16" in first_screen and "on 4 fresh seeds" in first_screen


def test_a_combination_worse_than_the_best_single_change_is_a_warning_and_that_change_is_recommended():
    records = one_factor({"lr 1e-3": 0.10, "batch 16": 0.08})
    confirmed = with_confirmation(records, {"lr 1e-3": 0.10, "combined: lr 1e-3 + batch 16": 0.04})
    results = results_table(confirmed)
    advice = recommend(summarise(results), results)
    assert advice.changes == ["lr 1e-3"] and advice.config.batch_size == 128 and advice.config.learning_rate == 1e-3
    assert "is worse than lr 1e-3 alone" in advice.warning and "the changes interact" in advice.warning
    assert advice.gain["variant"] == "lr 1e-3" and advice.gain["delta"] == pytest.approx(0.10, abs=0.01)
    page = render_report({"dataset": "d", "run_id": "r", "status": "done"}, None, summarise(results),
                         replace(verdict(summarise(results)), recommendation=advice), None, results)
    assert "<p class=warning>The combination of lr 1e-3, batch 16 is worse than lr 1e-3 alone" in page


def test_one_helping_change_is_the_recommendation_and_none_keeps_the_baseline():
    results = results_table(one_factor({"lr 1e-3": 0.10}))
    summary = summarise(results)
    assert combination(summary, results) is None and confirmation_round(one_factor({"lr 1e-3": 0.1}), None, 4, 10) == []
    advice = recommend(summary, results)
    assert advice.changes == ["lr 1e-3"] and not advice.confirmed and advice.gain["variant"] == "lr 1e-3"
    nothing = results_table(one_factor({}))
    keep = recommend(summarise(nothing), nothing)
    assert keep.changes == [] and keep.gain is None and keep.config == BASE


def test_two_helping_changes_of_one_axis_are_not_combined():
    results = results_table(one_factor({"lr 1e-3": 0.10, "lr 1e-2": 0.06}))
    assert combination(summarise(results), results) is None


def test_two_helping_changes_that_amount_to_one_configuration_are_not_combined():
    variants = grid_variants(["optimizer", "weight_decay"], 3, BASE)  # AdamW sets weight decay 1e-4; so does wd 1e-4
    records = records_for(seeded(variants, range(4)), {"AdamW wd 1e-4": 0.10, "wd 1e-4": 0.08})
    results = results_table(records)
    summary = summarise(results)
    assert (summary.set_index("variant").loc[["AdamW wd 1e-4", "wd 1e-4"], "effect"] == HELPS).all()
    assert combination(summary, results) is None
    assert recommend(summary, results).changes == ["AdamW wd 1e-4"]


def test_the_recommendation_reads_back_as_a_grid_files_baseline_and_as_options(tmp_path):
    config = replace(BASE, normalization="standardize", conv_filters=(32, 64), augmentation=("flip",))
    block = settings_block(config)
    assert tomllib.loads(block)["baseline"] == {"epochs": 3, "normalization": "standardize", "conv_filters": [32, 64],
                                                 "learning_rate": 3e-4, "batch_size": 128, "augmentation": ["flip"]}
    flags = cli_flags(config)
    assert flags.startswith("--epochs 3 --set normalization=standardize --set 'conv_filters=[32, 64]'")
    import shlex

    words = shlex.split(flags)
    settings = dict(parse_setting(words[i + 1]) for i, word in enumerate(words) if word == "--set")
    assert baseline_config(settings, int(words[1])) == config
    grid = tmp_path / "next.toml"
    grid.write_text(follow_up(config, {"learning_rate": [1e-2, 3e-4], "warmup_epochs": [0, 1],
                                       "batch_size": [128]}, "auto", 8, header="the next grid\nsecond line"))
    spec = load_grid(grid)
    assert spec.baseline.config() == config and spec.seeds == "auto" and spec.max_seeds == 8
    assert list(spec.axes) == ["learning_rate"]  # a warm-up needs the cosine schedule; batch 128 is the baseline


def test_a_variant_broken_on_every_seed_is_named_and_settled_after_its_first_round():
    plan = looks(10)
    first = next_round(VARIANTS, [], plan, 10)
    assert {c.config.seed for c in first} == {0, 1, 2} and len(first) == 3 * len(VARIANTS)
    records = records_for(first, {"lr 1e-3": 0.2, "batch 16": 0.004}, broken=("lr 1e-2",))
    assert broken_variants(records, 10) == {("learning_rate", "lr 1e-2"): "the loss became NaN on 3 of 3 seeds"}
    summary = summarise(results_table(records), plan, broken_variants(records, 10)).set_index("variant")
    assert summary.loc["lr 1e-2", "stopped"] == BROKEN and summary.loc["lr 1e-3", "stopped"] == DECIDED
    following = next_round(VARIANTS, records, plan, 10)
    assert {(c.variant, c.config.seed) for c in following} >= {("baseline", 3), ("baseline", 4), ("batch 16", 4)}
    assert not {c.variant for c in following} & {"lr 1e-2", "lr 1e-3"}  # settled: no more seeds
    outcome = verdict(summary.reset_index(), plan)
    assert [row["variant"] for row in outcome.broken] == ["lr 1e-2"]
    assert "lr 1e-2" not in {row["variant"] for row in outcome.hurts + outcome.unclear}


def test_nothing_is_called_broken_when_the_baseline_itself_never_learns():
    records = records_for(seeded(VARIANTS, range(3)), {}, broken=("baseline", "lr 1e-2"))
    assert broken_variants(records, 10) == {}


def test_a_variant_read_back_from_the_results_table_is_the_config_it_trained_with():
    results = results_table(one_factor({}))
    assert config_of(results, "batch_size", "batch 16") == replace(BASE, batch_size=16)
    assert not math.isnan(results["test_accuracy"].iloc[0])
