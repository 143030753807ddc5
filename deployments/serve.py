"""Serve every deployment of deployments/prefect.yaml from this process (no work pool, no worker):

    python deployments/serve.py        # the same as `ablate serve`
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere in a clone

from flows.serving import serve_all  # noqa: E402

if __name__ == "__main__":
    serve_all()
