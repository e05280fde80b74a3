"""The detector's config: one dataclass for its scenes, model and training.

Saved as ``config.json`` beside every detector (``detector.config.json`` beside
the shipped one), so inference rebuilds the same decoding without guessing.
Each field carries its help text in ``metadata``; the CLI derives its flags
from ``dataclasses.fields(DetectorConfig)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from locmnist.config import (LR_SCHEDULES, _f, config_from_dict, config_to_dict, load_config,
                             replace_config, save_config)

DETECTOR_PRESETS = ("detect", "detect-quick")


@dataclass
class DetectorConfig:
    preset: str = _f("detect", "the preset this config started from", settable=False)
    kind: str = _f("detector", "model kind; always 'detector' (tells it from a localizer's "
                               "Config)", settable=False)
    # --- scenes -------------------------------------------------------------
    canvas_height: int = _f(112, "training canvas height in pixels (a multiple of 16)")
    canvas_width: int = _f(160, "training canvas width in pixels (a multiple of 16)")
    min_height: float = _f(15.0, "smallest digit ink height in canvas pixels")
    max_height: float = _f(70.0, "largest digit ink height in canvas pixels")
    max_digits: int = _f(6, "most digits on one canvas")
    row_fraction: float = _f(0.5, "share of canvases with digits in a row, like a number "
                                  "(the rest are scattered)")
    negative_fraction: float = _f(0.25, "share of canvases with no digit (strokes that are not "
                                       "digits, or blank)")
    max_rotation_deg: float = _f(12.0, "digit rotation, uniform in [-x, x] degrees")
    max_shear: float = _f(0.15, "horizontal shear factor, uniform in [-x, x]")
    thickness: bool = _f(True, "randomly thin or thicken strokes")
    aspect_jitter: float = _f(0.0, "digit width times uniform [1-x, 1+x]: outside MNIST's "
                                   "normalization")
    styles_fraction: float = _f(0.0, "style variants (locmnist.styles) added to the training "
                                     "digits, as a share of them")
    train_digits: int = _f(55_000, "digits drawn from the 60k MNIST train set (0 = all that remain)")
    val_digits: int = _f(1_500, "digits held out from the train set for validation mAP")
    # --- model --------------------------------------------------------------
    widths: tuple[int, ...] = _f((24, 32, 64, 96), "conv widths at strides 2, 4, 8 and 16")
    head_width: int = _f(48, "width of the stride-4 feature map the heads read")
    # --- decoding -----------------------------------------------------------
    score_threshold: float = _f(0.3, "a centre peak at least this high is a digit (where no "
                                     "acceptance is fitted for the detector: "
                                     "locmnist.acceptance)")
    top_k: int = _f(100, "most detections per image")
    # --- training -----------------------------------------------------------
    epochs: int = _f(12, "epochs (an epoch is canvases_per_epoch canvases)")
    canvases_per_epoch: int = _f(8_000, "training canvases per epoch (fresh ones every epoch)")
    batch_size: int = _f(32, "canvases per batch")
    learning_rate: float = _f(3e-3, "peak of the warmup + cosine schedule")
    warmup_epochs: float = _f(0.3, "linear warmup length in epochs")
    lr_schedule: str = _f("cosine", "cosine: warmup, then decay to ~0 at the last step; "
                                    "constant: the peak rate throughout", choices=LR_SCHEDULES)
    size_loss_weight: float = _f(1.0, "weight of the box-size L1 loss (in stride-4 cells)")
    offset_loss_weight: float = _f(1.0, "weight of the centre-offset L1 loss")
    time_limit_s: float = _f(0.0, "safety cap: stop training after this many seconds (0 = none)")
    seed: int = _f(0, "seed of the hold-out split, the scenes and the weights")

    def __post_init__(self) -> None:
        self.widths = tuple(int(w) for w in self.widths)
        if len(self.widths) != 4:
            raise ValueError("widths needs 4 values (strides 2, 4, 8, 16)")
        if self.canvas_height % 16 or self.canvas_width % 16:
            raise ValueError("canvas_height and canvas_width must be multiples of 16")
        if not 4 <= self.min_height <= self.max_height <= self.canvas_height - 4:
            raise ValueError("need 4 <= min_height <= max_height <= canvas_height - 4")
        if self.epochs < 1 or self.batch_size < 1 or self.canvases_per_epoch < self.batch_size:
            raise ValueError("epochs, batch_size and canvases_per_epoch must be positive, "
                             "with at least one batch per epoch")
        if not 1 <= self.max_digits <= 12:
            raise ValueError("max_digits must be 1..12")
        if not (0 <= self.aspect_jitter < 1 and 0 <= self.styles_fraction <= 1):
            raise ValueError("need 0 <= aspect_jitter < 1 and 0 <= styles_fraction <= 1")

    # -- persistence (one owner: the functions in locmnist.config) ------------
    def to_dict(self) -> dict:
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DetectorConfig":
        return config_from_dict(cls, d)

    def save(self, path: str | Path) -> None:
        save_config(self, path)

    @classmethod
    def load(cls, path: str | Path) -> "DetectorConfig":
        return load_config(cls, path)

    def replace(self, **overrides) -> "DetectorConfig":
        return replace_config(self, **overrides)

    @property
    def steps_per_epoch(self) -> int:
        return self.canvases_per_epoch // self.batch_size


def is_detector_config(d: dict | None) -> bool:
    """Whether a saved config (a dict from JSON) belongs to a detector."""
    return isinstance(d, dict) and d.get("kind") == "detector"


def detector_preset(name: str, **overrides) -> DetectorConfig:
    """The named detector preset with optional overrides (None values are ignored).

    Both presets are a fixed amount of work (epochs x canvases); their time limit
    is only a safety cap, so the result does not depend on the machine's speed.
    """
    if name == "detect":
        # Style variants (10% more digits, locmnist.styles) and +-30% aspect changes: digits
        # as people draw them. Before the reader settled its candidates this detector left
        # fewer negatives clean; with settling, through read on the validation scenes it
        # reads as many (0.933) and more numbers (0.9759 against 0.9708), 188 drawn numbers
        # of 200 (184) and every drawn digit (300 of 300; 297), and the test split's mAP is
        # as high (README, "Reading numbers").
        cfg = DetectorConfig(preset="detect", styles_fraction=0.1, aspect_jitter=0.3,
                             time_limit_s=4 * 3600.0)
    elif name == "detect-quick":
        # The Train page's run: a narrower net, a few minutes on 2 cores.
        # In so short a run a light size loss lets the heatmap learn first (mAP@0.5 0.79
        # against 0.62 with the detect preset's weight 1.0 and 15% negatives, measured).
        # 5 epochs, not 3 (test mAP@0.5 0.91 instead of 0.80; issue 10 asks for 0.90 within
        # 4 E), on 96 px tall canvases (still room for a 70 px digit; 14% fewer pixels than
        # 112) and 500 validation digits: 0.90 after epoch 4 at 2.9 E instead of 3.5 E
        # (python -m bench --presets detect-quick; the model reads any canvas size).
        cfg = DetectorConfig(preset="detect-quick", widths=(16, 24, 48, 64), head_width=32,
                             canvas_height=96, epochs=5, canvases_per_epoch=4_000,
                             learning_rate=4e-3, warmup_epochs=0.2, val_digits=500,
                             size_loss_weight=0.1,
                             negative_fraction=0.1, time_limit_s=1800.0)
    else:
        raise ValueError(f"unknown detector preset {name!r}; choose from {DETECTOR_PRESETS}")
    return cfg.replace(**overrides)
