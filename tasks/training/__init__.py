"""Stage 3, training: the grid of variants and the processes that train its cells.

Owns: the baseline, the axes and their expansion into cells (`grid`), grid files (`grid_file`) and their time
estimate (`estimate`), the model builders (`models`), one cell's training (`train`) and its input batches
(`feed`), the machine's devices and the slot plan (`devices`), the pool of long-lived training processes
(`slots`), a cell inside a Dask worker (`dask_worker`) and finished cells kept for reuse (`cell_cache`).

May import: `tasks.data` (a training process opens the cached dataset), and the shared `tasks.errors`,
`tasks.paths`, `tasks.files`. Not the gate: training reads the data, never the gate's verdict on it.
Keras is imported only inside the functions that train or build, so the CLI and the flow stay light.
"""
