"""Prefect flows and the `ablate` CLI.

Analytics of Prefect and Great Expectations are switched off before either is imported: the tool runs
offline, and their attempts to reach the network would only add errors and delay.
"""

import os

for _name, _value in {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "GX_ANALYTICS_ENABLED": "false",
}.items():
    os.environ.setdefault(_name, _value)
