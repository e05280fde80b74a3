"""The benchmark: ``python -m bench`` (see ``bench/__main__.py``).

Not part of the library: it measures ``locmnist`` (and the reference recipe it
replaces) and keeps its results beside it, in ``bench/results.json`` and
``bench/results.txt``.
"""
