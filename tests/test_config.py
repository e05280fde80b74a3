"""Config: presets, validation, persistence, and the flags/overrides derived from its fields."""
import argparse
import dataclasses
import json

import pytest

from locmnist.config import (CANVAS_SIZE, INPUT_SHAPE, PRESETS, Config, add_field_arguments,
                             field_argv, field_help, field_overrides, parse_value, preset,
                             settable_fields)


def field(name):
    return next(f for f in dataclasses.fields(Config) if f.name == name)


def test_every_field_has_help_and_only_the_fixed_ones_are_not_settable():
    for f in dataclasses.fields(Config):
        assert f.metadata["help"].strip(), f.name
    fixed = {f.name for f in dataclasses.fields(Config)} - {f.name for f in settable_fields(Config)}
    assert fixed == {"preset", "canvas_size"}


def test_the_input_contract():
    assert INPUT_SHAPE == (CANVAS_SIZE, CANVAS_SIZE, 1) == (75, 75, 1)
    assert Config().canvas_size == CANVAS_SIZE
    with pytest.raises(ValueError, match="canvas_size is fixed"):
        Config(canvas_size=64)


@pytest.mark.parametrize("name", PRESETS)
def test_each_preset_round_trips_through_flags_and_json(name, tmp_path):
    cfg = preset(name)
    parser = argparse.ArgumentParser()
    add_field_arguments(parser, Config)
    values = {f.name: getattr(cfg, f.name) for f in settable_fields(Config)}
    args = parser.parse_args(field_argv(values, Config))
    assert preset(name, **field_overrides(args, Config)) == cfg
    cfg.save(tmp_path / "config.json")
    assert Config.load(tmp_path / "config.json") == cfg
    assert json.loads((tmp_path / "config.json").read_text())["widths"] == list(cfg.widths)


def test_flags_are_named_after_fields_unless_a_field_names_its_own():
    parser = argparse.ArgumentParser()
    add_field_arguments(parser, Config)
    args = parser.parse_args(["--batch-size", "32", "--time-limit", "9", "--widths", "4,8,8,8",
                              "--thickness", "false", "--data", "seed"])
    assert field_overrides(args, Config) == {"batch_size": 32, "time_limit_s": 9.0,
                                             "widths": (4, 8, 8, 8), "thickness": False,
                                             "data": "seed"}
    for bad in (["--epochs", "1.5"], ["--data", "weird"], ["--thickness", "maybe"]):
        with pytest.raises(SystemExit):  # argparse's clear one-line error, exit status 2
            parser.parse_args(bad)


def test_json_overrides_are_checked_by_type():
    assert field_overrides({"epochs": 3, "widths": [4, 8], "learning_rate": 1,
                            "seed": None}, Config) == {"epochs": 3, "widths": (4, 8),
                                                       "learning_rate": 1.0}
    with pytest.raises(ValueError, match="cannot set"):
        field_overrides({"preset": "quick"}, Config)  # not a settable field
    with pytest.raises(ValueError, match="epochs must be an integer"):
        field_overrides({"epochs": True}, Config)
    with pytest.raises(ValueError, match="box_loss must be one of"):
        parse_value(field("box_loss"), "l2")
    with pytest.raises(ValueError, match="list of integers"):
        parse_value(field("widths"), [])


def test_validation_and_old_configs():
    with pytest.raises(ValueError, match="min_height"):
        preset("quick", min_height=60.0, max_height=20.0)
    with pytest.raises(ValueError, match="unknown preset"):
        preset("huge")
    # A config saved before the closer look (no crop_size) keeps the backbone-only model;
    # keys a newer version wrote are ignored.
    old = Config.from_dict({"epochs": 14, "dense_units": 192, "retired_field": 1})
    assert old.crop_size == 0 and old.epochs == 14 and old.lr_schedule == "cosine"


def test_the_seed_recipe_is_fields_not_a_name():
    seed = preset("seed")
    assert (seed.arch, seed.data, seed.lr_schedule, seed.box_loss) == (
        "seed", "seed", "constant", "mse")
    assert field_help(Config, "lr_schedule").startswith("cosine")
