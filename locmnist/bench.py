"""``python -m locmnist bench``: measure locmnist against the reference recipe.

(Being written: see issue 5.)
"""
from __future__ import annotations


def add_arguments(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args) -> int:
    raise NotImplementedError("bench is not written yet")
