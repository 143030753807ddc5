"""Imported once by the forkserver that training processes are forked from (`tasks.training.processes`): the
framework and this project's training code, so that each forked process starts with them in memory.

Runs in the forkserver's own fresh interpreter, never in the run's process. The setting it imports under is the
one every forked process shares: the TensorFlow backend, no GPU (the forkserver serves CPU processes only), and
TensorFlow's quiet log level. The import's own start-up lines ("oneDNN custom operations are on", "Could not find
cuda drivers") are discarded: without --verbose nobody reads them, and --verbose runs spawn their processes.
Nothing here may raise: a failed import leaves each forked process to import (and report) for itself.
"""

import atexit
import os
import signal

from tasks.training.output import tf_log_level

# A terminal that closes sends SIGHUP to the whole process group, the forkserver included: it must live on long
# enough to reap the training processes the run then stops (Python's forkserver already ignores Ctrl-C's SIGINT),
# or they would stay behind as zombies. Forked processes set SIGHUP back to its default first thing.
signal.signal(signal.SIGHUP, signal.SIG_IGN)
# When the run's process ends, the forkserver exits without tearing TensorFlow down (a second or more), so the
# run can wait for it: the last handler registered runs first.
atexit.register(os._exit, 0)

os.environ |= {"KERAS_BACKEND": "tensorflow", "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": tf_log_level(False)}
# For good, not only during the import: the forkserver outlives the run's process by its own teardown (about a
# second with TensorFlow loaded), and holding the run's stdout and stderr open would keep a pipe reading them (a
# shell's `| tee`, a CI log, subprocess.run) waiting that long after the run ended. Each forked process points
# its output at its own log file first thing.
_quiet = os.open(os.devnull, os.O_WRONLY)
os.dup2(_quiet, 1)
os.dup2(_quiet, 2)
os.close(_quiet)
try:
    from tasks.training.framework import import_keras

    import_keras()
    from tasks.training import feed, models, train  # noqa: F401
except BaseException:  # noqa: S110 - see the module's docstring
    pass
