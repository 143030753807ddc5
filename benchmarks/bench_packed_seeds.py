"""Packed seeds, an experiment: K seeds of one variant trained as one Keras model of K independent towers, against
K separate trainings. Prints wall times, the speed-up and each seed's best validation accuracy both ways.

The packed model has one input and K outputs, one tower per seed, each built by `tasks.training.models.build_model` with its
own initialisation (the seed's) and its own dropout layers; the losses are summed, and Adam's per-parameter
updates keep the towers' training independent. All towers see the same batches in the same order (the separate
trainings each shuffle by their own seed). Both ways run a fixed number of epochs (no early stopping), so they do
the same work; best epoch is tracked per tower.

Usage: python benchmarks/bench_packed_seeds.py [--seeds 3 4] [--epochs 10] [--threads 0]
The decision rule (issue 4): packed seeds become the default only where they are at least 1.3x faster with no
loss of accuracy. The spread over seeds is printed too: towers that share the batch order vary less than
separate trainings, which would narrow the report's confidence intervals for a reason that is not the data's.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[3, 4], help="K values to try (default: 3 4)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=0,
                        help="TensorFlow threads (default 0: all cores; 1 is what a slot gets on a 2-core machine)")
    args = parser.parse_args()

    import keras
    import numpy as np

    from tasks.data.datasets import load_dataset
    from tasks.training.grid import BASELINE
    from tasks.training.feed import normalize
    from tasks.training.train import init_process

    init_process(args.threads)
    data = load_dataset("digits")
    x_train, x_test = normalize(data.x_train, data.x_test, BASELINE.normalization)
    classes = len(data.class_names)
    print(f"machine: {os.cpu_count()} CPU cores ({args.threads or 'all'} used), Keras {keras.__version__} on {keras.backend.backend()}; "
          f"digits {x_train.shape[1:]}, {len(x_train)} training images, batch {BASELINE.batch_size}, "
          f"{args.epochs} epochs, baseline CNN")
    for k in args.seeds:
        seeds = list(range(k))
        separate_started = time.perf_counter()
        separate = [fit_one(x_train, data.y_train, x_test, data.y_test, classes, seed, args.epochs) for seed in seeds]
        separate_wall = time.perf_counter() - separate_started
        packed_started = time.perf_counter()
        packed = fit_packed(x_train, data.y_train, x_test, data.y_test, classes, seeds, args.epochs)
        packed_wall = time.perf_counter() - packed_started
        speedup = separate_wall / packed_wall
        loss = float(np.mean(separate) - np.mean(packed))
        print(f"K={k}: separate {separate_wall:.1f} s, packed {packed_wall:.1f} s, speed-up {speedup:.2f}x")
        print(f"    best val accuracy per seed: separate {fmt(separate)} (mean {np.mean(separate):.4f}); "
              f"packed {fmt(packed)} (mean {np.mean(packed):.4f}); mean difference {loss:+.4f}")
        print(f"    spread over seeds (std): separate {np.std(separate, ddof=1):.4f}, packed "
              f"{np.std(packed, ddof=1):.4f} (the report's intervals are built from this spread)")
        wins = speedup >= 1.3 and loss <= 0.005
        print(f"    verdict: {'packed seeds win' if wins else 'keep separate trainings'} "
              f"(rule: at least 1.3x faster and no loss of accuracy)")
    return 0


def fit_one(x_train, y_train, x_test, y_test, classes: int, seed: int, epochs: int) -> float:
    import keras

    from tasks.training.grid import BASELINE
    from tasks.training.models import build_model

    keras.utils.set_random_seed(seed)
    model = build_model(x_train.shape[1:], classes, replace(BASELINE, seed=seed))
    model.compile(optimizer=keras.optimizers.Adam(BASELINE.learning_rate), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(x_train, y_train, validation_data=(x_test, y_test), epochs=epochs,
                        batch_size=BASELINE.batch_size, verbose=0).history
    keras.backend.clear_session()
    return max(history["val_accuracy"])


def fit_packed(x_train, y_train, x_test, y_test, classes: int, seeds: list[int], epochs: int) -> list[float]:
    import keras

    from tasks.training.grid import BASELINE
    from tasks.training.models import build_model

    inputs = keras.Input(shape=x_train.shape[1:])
    outputs = []
    for seed in seeds:
        keras.utils.set_random_seed(seed)  # each tower starts from the weights its separate training would have
        tower = build_model(x_train.shape[1:], classes, replace(BASELINE, seed=seed))
        tower.name = f"tower_{seed}"
        outputs.append(keras.layers.Identity(name=f"seed_{seed}")(tower(inputs)))
    model = keras.Model(inputs, outputs)
    names = [f"seed_{seed}" for seed in seeds]
    model.compile(optimizer=keras.optimizers.Adam(BASELINE.learning_rate),
                  loss={name: "sparse_categorical_crossentropy" for name in names},
                  metrics={name: ["accuracy"] for name in names})
    history = model.fit(x_train, {name: y_train for name in names},
                        validation_data=(x_test, {name: y_test for name in names}), epochs=epochs,
                        batch_size=BASELINE.batch_size, verbose=0).history
    keras.backend.clear_session()
    return [max(history[f"val_{name}_accuracy"]) for name in names]


def fmt(values: list[float]) -> str:
    return ", ".join(f"{v:.4f}" for v in values)


if __name__ == "__main__":
    raise SystemExit(main())
