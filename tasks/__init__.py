"""The work of the pipeline as plain functions, one package per stage of the data flow, no Prefect anywhere:

    data -> gate -> training -> report

- `tasks.data`: read a dataset (digits, a folder of class subfolders, an .npz) into one form, and cache it.
- `tasks.gate`: measure every image, and validate the measurements with Great Expectations.
- `tasks.training`: the grid of variants, the models, one cell's training, and the processes that train cells.
- `tasks.report`: statistics and the verdict, diagnoses, plots, the HTML pages and the run folders.

A stage imports only from the stages its package docstring names (lower ones) and from the modules every stage
shares: `tasks.errors` (user errors and exit codes), `tasks.paths` (where things are written) and `tasks.files`
(atomic writes). `tests/test_layout.py` walks the imports and holds every module to this.
"""
