"""Import Keras, and its backend, into a training process without the integrations it loads and training never uses.

When scikit-learn and matplotlib are installed (this project installs both: digits come from scikit-learn, the
report draws with matplotlib), `import keras` imports them too, for its scikit-learn wrappers and its image-gallery
plots: 1.3 s of a 3.9 s import (measured on 2 cores, TensorFlow backend: 2.6 s without them). Every training
process and every forkserver pays for that import, on the way to the first cell.

So they are hidden while Keras is imported (an entry of None in `sys.modules` makes an import raise ImportError,
which Keras catches: its wrappers and plots then say the package is missing if anyone calls them, and nothing in
training does), and put back right after: a user's model file that imports either gets the real package. A
package that this process had already imported is left alone, and Keras uses it.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager

OPTIONAL = ("sklearn", "matplotlib")


def import_keras():
    """Import Keras and, on the TensorFlow backend, TensorFlow (which imports Keras too); return keras."""
    with _hidden([name for name in OPTIONAL if name not in sys.modules]):
        import keras

        if keras.backend.backend() == "tensorflow":
            import tensorflow  # noqa: F401
    return keras


@contextmanager
def _hidden(names: list[str]):
    for name in names:
        sys.modules[name] = None
    try:
        yield
    finally:
        for name in names:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]
