"""Curve diagnoses: each one found on the curve shape it names, and none on a healthy run."""

import math

from tasks.report.diagnose import diagnose


def run(train, val, train_loss=None, val_loss=None, epochs=None):
    n = len(val)
    train_loss = train_loss or [1.0 - 0.5 * a for a in train]
    val_loss = val_loss or [1.0 - 0.5 * a for a in val]
    return {"history": {"accuracy": train, "val_accuracy": val, "loss": train_loss, "val_loss": val_loss},
            "epochs": epochs or n}


def kinds(records, classes=10, max_epochs=6):
    return [d.kind for d in diagnose(records, classes, max_epochs)]


def test_a_healthy_run_has_nothing_to_report():
    assert kinds([run([0.5, 0.6, 0.7, 0.8, 0.86, 0.9], [0.5, 0.6, 0.68, 0.76, 0.82, 0.87])]) == []


def test_overfitting_train_far_above_validation_and_validation_loss_rising():
    found = diagnose([run([0.6, 0.75, 0.85, 0.93, 0.97, 0.99], [0.6, 0.7, 0.74, 0.73, 0.72, 0.71],
                          val_loss=[0.9, 0.7, 0.6, 0.65, 0.72, 0.8])], 10, 6)
    assert [d.kind for d in found] == ["overfitting"]
    assert "99%" in found[0].sentence and "71%" in found[0].sentence and "epoch 3" in found[0].sentence


def test_underfitting_both_low_and_flat():
    assert kinds([run([0.3, 0.35, 0.36, 0.36, 0.365, 0.366], [0.3, 0.34, 0.35, 0.35, 0.35, 0.35])]) == ["underfitting"]


def test_divergence_nan_loss_and_chance_accuracy():
    nan = math.nan
    record = run([0.1, nan, nan], [0.1, 0.1, 0.1], train_loss=[2.3, nan, nan], val_loss=[2.3, nan, nan])
    assert kinds([record], max_epochs=3) == ["divergence", "chance"]


def test_rising_training_loss_is_divergence():
    found = kinds([run([0.5, 0.55, 0.5, 0.45, 0.4, 0.35], [0.5, 0.5, 0.45, 0.4, 0.38, 0.35],
                       train_loss=[1.0, 1.2, 1.5, 1.9, 2.4, 3.0])])
    assert "divergence" in found and "underfitting" not in found


def test_oscillation_and_plateau_and_early_stopping():
    assert "oscillation" in kinds([run([0.5, 0.7, 0.6, 0.8, 0.6, 0.8], [0.5, 0.7, 0.5, 0.7, 0.5, 0.7])])
    plateau = diagnose([run([0.6, 0.8, 0.9, 0.9, 0.9, 0.9], [0.6, 0.8, 0.882, 0.884, 0.885, 0.885])], 10, 6)
    assert [d.kind for d in plateau] == ["plateau"] and "88%" in plateau[0].sentence
    stopped = [run([0.5, 0.7, 0.8, 0.85], [0.5, 0.7, 0.78, 0.8]), run([0.5, 0.7, 0.8, 0.85, 0.88, 0.9],
                                                                   [0.5, 0.7, 0.78, 0.8, 0.82, 0.84])]
    found = diagnose(stopped, 10, 6)
    assert found[-1].kind == "early stopping" and "1 of 2 seeds at epoch 4" in found[-1].sentence


def test_short_runs_get_no_trend_diagnoses():
    assert kinds([run([0.9, 0.99], [0.5, 0.5])], max_epochs=2) == []
