"""The commands a user types, as one table: each runs as typed, through the installed `ablate` (or `python -m`,
or `make`), in a fresh directory of its own, on data generated for it. `test_commands.py` checks each run;
`test_browser.py` reads the photo run's report. The README's commands are rows here, word for word, and
`test_commands.py` fails if the README shows one the table does not run.

A row may append options that keep the run small (a tiny slice, one or two epochs): the command as written
comes first, so what the user types is what is parsed and run.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the environment the tests run in, where `ablate` is installed
# `make run` uses the project's .venv; from another environment it would first build one (minutes).
IN_PROJECT_VENV = BIN.resolve() == (ROOT / ".venv" / "bin").resolve()
XSS_CLASS = "<img src=x onerror=alert(1)>"  # a class folder named like markup: the report must show it as text
# Seeds in rounds on a baseline with two faults (a learning rate too low, a batch too large for 160 images and 3
# epochs), each fixed by one change, and a learning rate far too high: the rounds stop it after the first, and
# the two fixes are combined and confirmed on fresh seeds.
ROUNDS_TOML = """seeds = "auto"
max_seeds = 5

[baseline]
epochs = 3
learning_rate = 0.0003
batch_size = 128

[axes]
learning_rate = [0.003, 10.0]
batch_size = [16]
"""
FACTORIAL_YAML = """seeds: 2
mode: factorial
baseline:
  epochs: 1
axes:
  learning_rate: [0.01, 0.001]
  optimiser: [adam, sgd]
"""


@dataclass(frozen=True)
class Command:
    name: str
    line: str  # as the user types it; path/to/photos and my-data.npz are the generated datasets
    small: str = ""  # options appended to keep the run small
    code: int = 0
    own_server: bool = False  # no PREFECT_API_URL, as a user has: the command starts the local server
    in_repo: bool = False  # run from the repository's root (make), writing under the run's own --out
    files: tuple[str, ...] = ()  # expected in the run folder


RUN_FILES = ("index.html", "results.csv", "history.csv", "summary.json", "cells.jsonl", "gate.json",
             "pixel_stats.csv", "data_docs/index.html")
GATE_FILES = ("index.html", "summary.json", "gate.json", "pixel_stats.csv", "data_docs/index.html")

COMMANDS = [
    Command("photos", "ablate run --dataset path/to/photos", "--axes dropout --epochs 2 --seeds 2", files=RUN_FILES),
    Command("validate", "ablate validate path/to/photos", files=GATE_FILES),
    Command("grid example", "ablate run --grid examples/ablation.toml --limit 100", files=RUN_FILES),
    Command("grid listing", "ablate grid --grid examples/ablation.toml"),
    Command("your model", "ablate run --model my_model:build_model --axes dropout depth",
            "--epochs 1 --seeds 2 --limit 60", files=RUN_FILES),
    Command("a/a control, British axis name", "ablate run --aa --axes normalisation",
            "--epochs 1 --seeds 3 --limit 100", files=RUN_FILES),
    Command("seeds in rounds, a broken learning rate, the follow-up grid", "ablate run --grid rounds.toml --next "
            "next.toml", "--limit 200", files=RUN_FILES + ("next.toml",)),
    Command("npz, factorial grid in YAML", "ablate run --dataset my-data.npz --grid factorial.yaml", files=RUN_FILES),
    Command("gate warn on a broken file", "ablate run --dataset broken-photos --gate warn --axes dropout",
            "--epochs 1 --seeds 1", files=RUN_FILES),
    Command("python -m flows.ablation, verbose", "python -m flows.ablation --axes dropout --verbose",
            "--epochs 1 --seeds 1 --limit 40", files=RUN_FILES),
    Command("python -m flows.data_quality_gate, relative --out",
            "python -m flows.data_quality_gate path/to/photos --out my-reports", files=GATE_FILES),
    Command("make run", 'make run ARGS="--axes dropout --epochs 1 --seeds 1 --limit 40 --out {home}/reports"',
            own_server=True, in_repo=True, files=RUN_FILES),
]


@dataclass
class Ran:
    command: Command
    argv: list[str]
    home: Path  # the directory it ran in (and whose reports/ it wrote, unless --out says otherwise)
    returncode: int
    stdout: str
    stderr: str
    run_dirs: list[Path] = field(default_factory=list)

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_all(root: Path, api_url: str, workers: int = 2) -> dict[str, Ran]:
    """Run every row, ``workers`` at a time, each in ``root/<n>`` with its data; a finished run per row name."""
    data = make_datasets(root / "data")
    rows = [row for row in COMMANDS if not row.in_repo or IN_PROJECT_VENV]
    with ThreadPoolExecutor(workers) as pool:
        runs = pool.map(lambda pair: run_one(pair[1], root / str(pair[0]), data, api_url), enumerate(rows))
        return {ran.command.name: ran for ran in runs}


def run_one(command: Command, home: Path, data: dict[str, Path], api_url: str) -> Ran:
    home.mkdir(parents=True)
    # A user's own model file, in their own folder: the builders the other tests use, under the name the docs show.
    (home / "my_model.py").write_text((ROOT / "tests" / "user_models.py").read_text() + "\nbuild_model = small_mlp\n")
    (home / "factorial.yaml").write_text(FACTORIAL_YAML)
    (home / "rounds.toml").write_text(ROUNDS_TOML)
    shutil.copytree(ROOT / "examples", home / "examples")  # as in a clone
    line = command.line.replace("{home}", str(home))
    for placeholder, path in data.items():
        line = line.replace(placeholder, str(path))
    argv = shlex.split(line) + shlex.split(command.small)
    if argv[0] == "ablate":
        argv[0] = str(BIN / "ablate")
    elif argv[0] == "python":
        argv[0] = sys.executable
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env |= {"PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}"}  # `make run` calls .venv/bin/ablate itself
    if not command.own_server:
        env["PREFECT_API_URL"] = api_url  # the session's server: saves each command ~8 s of starting its own
    result = subprocess.run(argv, cwd=ROOT if command.in_repo else home, env=env, capture_output=True, text=True,
                            timeout=600)
    reports = [home / "reports", home / "my-reports"]
    for folder in reports if command.own_server else []:  # it started the local server, as it should: stop it
        subprocess.run([str(BIN / "ablate"), "server", "stop", "--out", str(folder)], capture_output=True, env=env)
    run_dirs = sorted(p for folder in reports if folder.exists() for p in folder.iterdir()
                      if p.is_dir() and not p.name.startswith("."))
    return Ran(command, argv, home, result.returncode, result.stdout, result.stderr, run_dirs)


def make_datasets(folder: Path) -> dict[str, Path]:
    """The data the rows name: a folder of photos, the same with a broken file, and an .npz."""
    photos = write_photos(folder / "photos")
    broken = write_photos(folder / "broken-photos")
    (broken / "train" / "cats" / "truncated.jpg").write_bytes(b"\xff\xd8\xff\xe0 not the rest of a JPEG")
    return {"path/to/photos": photos, "broken-photos": broken, "my-data.npz": write_npz(folder / "my-data.npz")}


def write_photos(root: Path, per_class: int = 16, seed: int = 0) -> Path:
    """JPEG and PNG photos of three classes in the sizes and orientations a camera folder has (mostly 500x375
    landscape, portrait, square, 640x480), each class told apart by its colour and a shape, with noise; a class
    folder named like markup among them. They train at the working resolution, 128x96."""
    rng = np.random.default_rng(seed)
    sizes = [(375, 500), (500, 375), (375, 500), (480, 480), (375, 500), (480, 640)]  # height, width
    for split, count in (("train", per_class), ("test", per_class // 2)):
        for label, name in enumerate(("cats", "dogs", XSS_CLASS)):
            target = root / split / name
            target.mkdir(parents=True)
            for i in range(count):
                height, width = sizes[i % len(sizes)]
                y, x = np.mgrid[:height, :width]
                base = np.array([[200, 80, 60], [60, 160, 90], [70, 90, 210]][label], np.float32)
                shade = (0.6 + 0.4 * x / width)[..., None] * base
                shape = ((x - width / 2) ** 2 + (y - height / 2) ** 2 < (min(height, width) / (3 + label)) ** 2)
                pixels = shade + 60 * shape[..., None] + rng.normal(0, 18, (height, width, 3))
                image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
                image.save(target / (f"IMG_{i:04d}.jpg" if i % 4 else f"scan_{i:04d}.png"), quality=88)
    return root


def write_npz(path: Path, seed: int = 0) -> Path:
    """An .npz of 24x24 RGB uint8 images in four classes, told apart by brightness."""
    rng = np.random.default_rng(seed)

    def images(n):
        labels = np.arange(n) % 4
        pixels = rng.integers(0, 90, (n, 24, 24, 3)) + 50 * labels[:, None, None, None]
        return pixels.astype(np.uint8), labels

    (x_train, y_train), (x_test, y_test) = images(80), images(40)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path
