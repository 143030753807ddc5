"""Build the user's model (``--model``) once, before any training, in a process of its own.

Why a process: the flow's own process must not import Keras. TensorFlow's import prints start-up noise to the
terminal, takes seconds, and on a GPU machine would take the GPU's memory for the whole run (it keeps memory
until its process exits), memory the training processes need. The check runs on the CPU (it only builds the
model and calls it once), with its output in a log file unless ``verbose``, and only its verdict comes back.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from tasks.errors import AblationError
from tasks.training import processes
from tasks.training.output import LogFollower, send_output_to, tf_log_level


class UserModelError(AblationError):
    """The user's model cannot be imported or built, or does not fit the data (exit code 2)."""


def check_model(spec: str, input_shape: tuple[int, ...], num_classes: int, backend: str,
                emit: Callable[[str, str], None] | None = None) -> str | None:
    """Raise UserModelError, saying what is wrong, unless the builder ``spec`` ("package.module:function")
    imports, builds for ``input_shape`` and answers ``num_classes`` classes; return how the model prepares its
    own input (its Rescaling or Normalization layers), if it does. With ``emit`` (--verbose), every line the
    checking process printed, TensorFlow's INFO lines included, is handed to it afterwards."""
    context = processes.context(backend, emit is not None, ["cpu"])  # never this process's state: forked or fresh
    receive, send = context.Pipe(duplex=False)
    with tempfile.TemporaryDirectory(prefix="ablation-model-check-") as folder:
        log = str(Path(folder) / "model-check.log")
        process = context.Process(target=_check_here, name="ablation-model-check", daemon=True,
                                  args=(send, spec, tuple(input_shape), num_classes, backend, emit is not None,
                                        log))
        process.start()
        send.close()
        try:
            problem, preprocessing = receive.recv()
        except EOFError:  # it died before answering: out of memory, a crash in the framework
            process.join(5)
            raise UserModelError(f"--model {spec}: the process building it died (exit code {process.exitcode}): "
                                 f"{_tail(log)}") from None
        finally:
            if process.is_alive():  # interrupted while it builds
                process.kill()
            process.join()
            if emit is not None:
                LogFollower(Path(folder), emit).read_new()
    if problem:
        raise UserModelError(problem)
    return preprocessing


def _check_here(send, spec: str, input_shape: tuple[int, ...], num_classes: int, backend: str, verbose: bool,
                log: str) -> None:
    """The checking process: set the framework up quietly, build, and send back None or the problem."""
    processes.started_process()
    os.environ |= {"KERAS_BACKEND": backend, "CUDA_VISIBLE_DEVICES": "",
                   "TF_CPP_MIN_LOG_LEVEL": tf_log_level(verbose)}
    send_output_to(log)
    from tasks.training.framework import import_keras

    import_keras()  # here only
    from tasks.training.models import check_user_model

    try:
        preprocessing = check_user_model(spec, input_shape, num_classes)
    except UserModelError as exc:
        send.send((str(exc), None))
    except Exception as exc:  # anything else the user's code raised while being checked
        send.send((f"--model {spec}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", None))
    else:
        send.send((None, preprocessing))


def _tail(log: str, lines: int = 3) -> str:
    try:
        return " | ".join(Path(log).read_text(errors="replace").strip().splitlines()[-lines:]) or "no output"
    except OSError:
        return "no output"
