"""Stage 2, the data-quality gate: measure every image and validate the measurements with Great Expectations.

Owns: per-image pixel statistics (`pixel_stats`) and their cache (`stats_cache`), each image placed among the
others and the per-class table (`profile`), what each check is (`checks`), which checks run and how severe they
are (`suite`, read from `gate_suite.toml`), the validation itself with its result (`expectations`), and that
result kept for an unchanged dataset and suite (`result_cache`).

May import: `tasks.data`, and the shared `tasks.errors`, `tasks.paths`, `tasks.files`.
"""
