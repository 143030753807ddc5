"""Imported once by the forkserver that training processes are forked from (`tasks.training.processes`): the
framework and this project's training code, so that each forked process starts with them in memory.

Runs in the forkserver's own fresh interpreter, never in the run's process. The setting it imports under is the
one every forked process shares: the TensorFlow backend, no GPU (the forkserver serves CPU processes only), and
TensorFlow's quiet log level. The import's own start-up lines ("oneDNN custom operations are on", "Could not find
cuda drivers") are discarded: without --verbose nobody reads them, and --verbose runs spawn their processes.
Nothing here may raise: a failed import leaves each forked process to import (and report) for itself.
"""

import os

from tasks.training.output import tf_log_level

os.environ |= {"KERAS_BACKEND": "tensorflow", "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": tf_log_level(False)}
_saved = os.dup(1), os.dup(2)
_quiet = os.open(os.devnull, os.O_WRONLY)
os.dup2(_quiet, 1)
os.dup2(_quiet, 2)
try:
    import keras  # noqa: F401
    import tensorflow  # noqa: F401

    from tasks.training import feed, models, train  # noqa: F401
except BaseException:  # noqa: S110 - see the module's docstring
    pass
finally:
    os.dup2(_saved[0], 1)
    os.dup2(_saved[1], 2)
    for fd in (*_saved, _quiet):
        os.close(fd)
