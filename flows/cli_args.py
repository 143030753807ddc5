"""The `ablate` command line's options: the parser, the exit codes its help shows, and argument types that
check a value where argparse reads it (so a typo is a usage error at once, before anything is imported)."""

from __future__ import annotations

import argparse
from pathlib import Path

from tasks.training.grid import (AXES, BASELINE, DEFAULT_AXES, DEFAULT_MAX_SEEDS, DEFAULT_SEEDS, FIRST_LOOK,
                                 canonical_axes)

MAX_IMAGE_SIDE = 4096  # an image classifier's input is far smaller; larger requests are typos (and gigabytes)
EXIT_CODES = """exit codes:
  0  success (gate warnings allowed)
  1  the data-quality gate found critical problems (the report says which images)
  2  bad input or usage: missing or unreadable dataset, bad option, grid file or --model, unwritable --out,
     unreachable --dask-address or its TLS files
  3  nothing could be compared: the baseline (or every training run) failed; the report says why
  130  interrupted (Ctrl-C); 129 the terminal closed (SIGHUP); 143 terminated (SIGTERM): training processes
       stopped, finished cells kept"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ablate", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXIT_CODES,
        description="Find out why a Keras image classifier is not improving: gate the data, ablate, report.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{run,grid,validate,serve,server}")
    run = commands.add_parser("run", help="gate the dataset, train the ablation grid, write the report",
                              formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXIT_CODES)
    run.add_argument("--dataset", default="digits",
                     help="'digits' (built in), a folder with train/<class>/* [and test/<class>/*], or an .npz "
                          "with x_train, y_train, x_test, y_test (default: digits)")
    run.add_argument("--epochs", type=_positive, default=None,
                     help=f"epochs per training run (default: {BASELINE.max_epochs})")
    run.add_argument("--seeds", type=_seeds, default=None,
                     help=f"seeds per variant (default: {DEFAULT_SEEDS}), or 'auto': seeds in rounds, each change "
                          "getting more only while its verdict is open, up to --max-seeds")
    run.add_argument("--max-seeds", type=_max_seeds, default=None, metavar="N",
                     help=f"with --seeds auto: the most seeds any variant gets (default: {DEFAULT_MAX_SEEDS})")
    run.add_argument("--set", type=_setting, action="append", default=None, metavar="SETTING=VALUE",
                     dest="settings",
                     help="change the baseline, as a grid file's [baseline] does (e.g. --set learning_rate=3e-3 "
                          "--set normalization=standardize); repeat for more")
    run.add_argument("--model", default=None, metavar="MODULE:FUNCTION",
                     help="your model builder, (input_shape, num_classes, **options) -> keras.Model, importable "
                          "from here, in place of the built-in CNN; checked before any training")
    run.add_argument("--grid", type=Path, default=None, metavar="FILE",
                     help="a grid file (TOML or YAML): baseline, axes and values, seeds, one-factor or factorial "
                          "mode; replaces --axes, --epochs and --seeds (see examples/ablation.toml)")
    run.add_argument("--axes", type=_axes, nargs="+", default=None, metavar="AXIS",
                     help=f"axes to ablate, space- or comma-separated (default: the article's "
                          f"{', '.join(DEFAULT_AXES)}; also {', '.join(a for a in AXES if a not in DEFAULT_AXES)})")
    run.add_argument("--gate", choices=["fail", "warn"], default="fail",
                     help="on critical data problems: stop before training (fail, default) or train anyway (warn)")
    run.add_argument("--val-fraction", type=_fraction, default=None,
                     help="share of the training split each seed sets aside for validation, which early stopping "
                          "and the best epoch read (default: 0.2)")
    run.add_argument("--fixed-split", action="store_true",
                     help="one validation carve for every seed, instead of one per seed")
    run.add_argument("--next", type=Path, default=None, metavar="FILE", dest="next_grid",
                     help="also write the follow-up grid file here: the same axes around the recommended "
                          "configuration (every run writes it as next.toml beside its report)")
    run.add_argument("--aa", action="store_true",
                     help="A/A control: train the baseline a second time, independently; the report must find no "
                          "clear difference between the two (a check on the statistics)")
    run.add_argument("--store", type=Path, default=None, metavar="DIR",
                     help="where finished training cells are kept for reuse (default: the --out folder's .cache)")
    run.add_argument("--fresh", action="store_true",
                     help="train every cell again instead of reusing cells finished by an earlier run")
    run.add_argument("--keep-models", action="store_true",
                     help="copy every cell's best model (.keras) into the run folder, not only the best variant's")
    run.add_argument("--tensorboard", action="store_true", help="write TensorBoard logs for every trained cell")
    run.add_argument("--cell-timeout", type=_seconds, default=None, metavar="SECONDS",
                     help="stop a cell that trains longer than this (its process is replaced); default: no limit")
    run.add_argument("--retries", type=_count, default=1,
                     help="retries for a cell whose training process crashed (killed, out of memory); default: 1")
    run.add_argument("--backend", choices=["tensorflow", "jax", "torch"], default="tensorflow",
                     help="Keras 3 backend of the training processes (default: tensorflow)")
    run.add_argument("--per-gpu", type=_positive, default=8, metavar="N",
                     help="training processes per GPU (default: 8, fewer on a GPU with under 2 GiB per process)")
    run.add_argument("--processes", type=_positive, default=None, metavar="N",
                     help="training processes in all (default: one per CPU core, or --per-gpu per GPU)")
    run.add_argument("--executor", choices=["local", "dask"], default=None,
                     help="where cells train: a pool of local training processes (local, default) or the workers "
                          "of a Dask cluster (dask: a local one unless --dask-address is given)")
    run.add_argument("--dask-address", default=None, metavar="tls://HOST:PORT",
                     help="scheduler of an existing Dask cluster to train on (implies --executor dask); --out or "
                          "--store must be on storage its workers share. tls:// encrypts and authenticates; "
                          "tcp:// beyond this machine does neither, and the run warns")
    for name, what in (("ca-file", "the CA certificate(s) that signed the scheduler's certificate"),
                       ("cert", "this client's certificate"),
                       ("key", "this client's private key, if not in --dask-tls-cert")):
        run.add_argument(f"--dask-tls-{name}", default=None, metavar="PEM",
                         help=f"for a tls:// --dask-address: {what} (sets Dask's distributed.comm.tls.*)")
    grid = commands.add_parser("grid", help="list the cells a grid file expands to, their count and an estimate "
                                             "of the training time, without training")
    grid.add_argument("--grid", type=Path, required=True, metavar="FILE", help="the grid file (TOML or YAML)")
    grid.add_argument("--aa", action="store_true", help="include the A/A control")
    grid.add_argument("--out", type=Path, default=None,
                      help="reports folder whose finished cells calibrate the estimate (default: ./reports)")
    commands.add_parser("serve", help="serve the deployments of deployments/prefect.yaml from this process "
                                      "(schedules included; no work pool or worker needed) until Ctrl-C")
    server = commands.add_parser("server", help="show, start or stop the local Prefect server that `ablate` "
                                                 "commands share (see docs/command-line.md)")
    server.add_argument("action", choices=["status", "start", "stop"])
    server.add_argument("--out", type=Path, default=None,
                        help="reports folder whose server this is (default: ./reports)")
    validate = commands.add_parser("validate", help="run the data-quality gate alone",
                                   formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXIT_CODES)
    validate.add_argument("dataset", nargs="?", default="digits", help="'digits', a folder or an .npz file")
    validate.add_argument("--dedupe-report", type=Path, default=None, metavar="FILE",
                          help="write every test image that has an exact or near copy in the training split to "
                               "this CSV file (test image, training image, distance), to purge them")
    for sub in (run, validate):
        sub.add_argument("--limit", type=_positive, default=None, help="at most N images per split, stratified")
        sub.add_argument("--image-size", type=_image_size, default=None, metavar="N|HxW",
                         help="bring every image to this size (default: the most common size)")
        sub.add_argument("--test-fraction", type=_fraction, default=0.2,
                         help="share held out as the test split when the dataset has none (default: 0.2)")
        sub.add_argument("--out", type=Path, default=None, help="reports folder (default: ./reports)")
        sub.add_argument("--suite", type=Path, default=None, metavar="PATH",
                         help="gate suite file (TOML): checks, severities, thresholds "
                              "(default: tasks/gate/gate_suite.toml)")
        sub.add_argument("--ephemeral", action="store_true",
                         help="run on a temporary Prefect server that ends with this command, instead of the local "
                              "server commands share (also ABLATE_EPHEMERAL=1); for places that forbid background "
                              "processes")
        sub.add_argument("--verbose", action="store_true",
                         help="also show the frameworks' own messages (TensorFlow, Great Expectations, Dask) here; "
                              "training processes always write theirs to <run>/logs/")
    return parser


def _number(convert, valid, expected: str):
    """An argparse type: ``convert`` the text, check it with ``valid``, else say what was ``expected``."""
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not valid(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value
    return parse


_positive = _number(int, lambda v: v >= 1, "a whole number of at least 1")
_count = _number(int, lambda v: v >= 0, "a whole number, 0 or more")
_seconds = _number(float, lambda v: v > 0, "a positive number of seconds")
_fraction = _number(float, lambda v: 0 < v < 1, "a fraction between 0 and 1")
_max_seeds = _number(int, lambda v: FIRST_LOOK <= v <= 100, f"a whole number from {FIRST_LOOK} to 100")


def _seeds(text: str) -> int | str:
    if text.strip().lower() == "auto":
        return "auto"
    return _positive(text)


def _setting(text: str) -> tuple[str, object]:
    from tasks.training.grid_file import parse_setting

    try:
        return parse_setting(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _axes(text: str) -> list[str]:
    names = canonical_axes([name.strip() for name in text.split(",") if name.strip()])  # normalisation too
    unknown = [name for name in names if name not in AXES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown axis {', '.join(unknown) or text!r}; choose from {', '.join(AXES)}")
    return names


def _image_size(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    try:
        size = tuple(int(p) for p in parts) * (2 if len(parts) == 1 else 1)
    except ValueError:
        size = ()
    if len(size) != 2 or min(size) < 1:
        raise argparse.ArgumentTypeError(f"expected N or HxW (e.g. 32 or 32x48), got {text!r}")
    if max(size) > MAX_IMAGE_SIDE:
        raise argparse.ArgumentTypeError(f"at most {MAX_IMAGE_SIDE} pixels a side, got {text!r}")
    return size
