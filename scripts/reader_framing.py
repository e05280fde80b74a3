"""How ``Reader.read`` frames an image, compared: digit height and margin, by what it reads.

    python -m scripts.reader_framing                       # ~4 min on 2 cores (repo root)
    python -m scripts.reader_framing --settings 34,0.6 30,0.3 --split test

``read`` rescales every image so its digits reach the detector ``TARGET_HEIGHT`` px
tall, with ``MARGIN`` digit heights of context (``locmnist.reader.frame_ink``). For
each setting (height, margin), with the shipped models:

* the detection validation scenes (``--split validation``, the default; ``test``: the
  published test split), each canvas given to ``read`` as an image
  (``locmnist.detection_eval.read_metrics``): numbers, single digits, negatives;
* ``--drawn`` drawn numbers of 2-4 digits (``bench.probes.number_drawing``), seed 123:
  not the benchmark's seed, whose numbers stay held out; and 300 drawn single digits
  (``locmnist.wild.drawn``, 280x280, seed 7), each read as one digit or not.

The shipped setting was chosen from the validation and drawn rows, never from the
test split's.
"""
from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

TUNING_SEED = 123   # drawn numbers for choosing; the benchmark reads DRAWN_NUMBERS_SEED's
SINGLES_SEED = 7    # drawn single digits


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m scripts.reader_framing", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--settings", nargs="+", default=["34,0.6", "30,0.6", "30,0.45", "30,0.3"],
                    metavar="HEIGHT,MARGIN")
    ap.add_argument("--split", choices=("validation", "test"), default="validation")
    ap.add_argument("--drawn", type=int, default=200, help="drawn numbers to read (0: none)")
    ap.add_argument("--detector", default=None,
                    help="detector .keras or run directory (default: the shipped one)")
    args = ap.parse_args(argv)
    try:
        settings = [tuple(float(v) for v in s.split(",")) for s in args.settings]
        if any(len(s) != 2 or s[0] <= 0 or s[1] < 0 for s in settings):
            raise ValueError
    except ValueError:
        ap.error("each setting is HEIGHT,MARGIN: a height > 0 and a margin >= 0, e.g. 30,0.3")

    import numpy as np

    from bench.probes import drawn_numbers
    from locmnist import reader as reading
    from locmnist.detection_eval import read_metrics
    from locmnist.scenes import detection_test_split, detection_validation_split
    from locmnist.wild import drawn as drawn_digit

    scenes = detection_test_split() if args.split == "test" else detection_validation_split()
    reader = reading.Reader.load(args.detector)
    shipped = (reading.TARGET_HEIGHT, reading.MARGIN)
    rng = np.random.default_rng(SINGLES_SEED)
    singles = [(k % 10, drawn_digit(k % 10, rng).image) for k in range(300)]
    print(f"| height, margin | {args.split}: numbers | single digits | negatives clean | "
          f"drawn numbers read (seed {TUNING_SEED}) | drawn single digits read (seed "
          f"{SINGLES_SEED}) |\n|---|---|---|---|---|---|")
    try:
        for height, margin in settings:
            # ``frame_ink`` reads these module settings on every call.
            reading.TARGET_HEIGHT, reading.MARGIN = height, margin
            m = read_metrics(reader, scenes)
            drawn = drawn_numbers(reader, args.drawn, seed=TUNING_SEED) if args.drawn else None
            right = sum(reader.read(img).text == str(label) for label, img in singles)
            mark = " (shipped)" if (height, margin) == shipped else ""
            print(f"| {height:g} px, {margin:g}{mark} | {m['read_number_accuracy']:.4f} | "
                  f"{m['read_single_digit_one_right']:.4f} | {m['read_negatives_clean']:.4f} | "
                  + (f"{drawn['right']}/{drawn['numbers']} |" if drawn else "n/a |")
                  + f" {right}/{len(singles)} |", flush=True)
    finally:
        reading.TARGET_HEIGHT, reading.MARGIN = shipped
    return 0


if __name__ == "__main__":
    sys.exit(main())
