"""Stage 1, data: read a dataset into one form (`store.Dataset`), decoded once into a shared, memory-mapped cache.

Owns: choosing the loader for digits, image folders and .npz files (`datasets`), loading a folder into the cache
(`folder`), decoding on every core (`decode`), listing, reading and resizing image files (`images`), the working
resolution (`resolution`), the `Dataset` and its cache of ``.npy`` files (`store`), and stratified held-out
splits and ``--limit`` subsets (`sampling`).

May import: `tasks.errors`, `tasks.paths`, `tasks.files`. Nothing from the later stages.
"""
