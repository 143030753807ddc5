"""Stage 1, data: read a dataset into one in-memory form (`datasets.Dataset`), and cache it for other processes.

Owns: the loaders for digits, image folders and .npz files (`datasets`), decoding and resizing image files
(`images`), stratified held-out splits and ``--limit`` subsets (`sampling`), and the decoded-dataset cache.

May import: `tasks.errors`, `tasks.paths`, `tasks.files`. Nothing from the later stages.
"""
