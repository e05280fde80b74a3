"""Multi-digit scenes: tight boxes, layouts, determinism, the test split's makeup."""
import numpy as np
import pytest

from locmnist.boxes import INK_THRESHOLD, tight_box
from locmnist.detector_config import DetectorConfig
from locmnist.scenes import (_draw_params, build_scene_set, render_digit, row_scene,
                             scatter_scene, scene_batch)

CFG = DetectorConfig()


def test_render_digit_is_cropped_to_its_ink(mnist):
    for i, h in enumerate((15.0, 30.0, 70.0)):
        p = render_digit(mnist.x_train[i], h, rotation_deg=8.0, shear=0.1, thickness=0.9)
        assert p is not None
        assert tight_box(p).tolist() == [0, 0, p.shape[1], p.shape[0]]
        assert abs(p.shape[0] - h) <= 0.25 * h + 2   # rotation and shear change it a little


def test_every_box_is_the_tight_box_of_its_own_digit(mnist):
    """Boxes touch ink on all four sides, and no ink lies outside every box."""
    scenes = scene_batch(mnist.x_train, mnist.y_train.astype(np.int64), CFG, seed=3,
                         batch_index=0, batch_size=48)
    assert {s.kind for s in scenes} >= {"row", "scatter"}
    for s in scenes:
        ink = s.canvas >= INK_THRESHOLD
        covered = np.zeros_like(ink)
        for x0, y0, x1, y1 in s.boxes.astype(int):
            sub = ink[y0:y1, x0:x1]
            assert sub[0].any() and sub[-1].any() and sub[:, 0].any() and sub[:, -1].any()
            covered[y0:y1, x0:x1] = True
        if s.kind != "negative":
            assert not (ink & ~covered).any()
        assert len(s.boxes) == len(s.labels) <= CFG.max_digits


def test_scene_batches_are_seeded(mnist):
    args = (mnist.x_train, mnist.y_train.astype(np.int64), CFG)
    a = scene_batch(*args, seed=1, batch_index=5, batch_size=8)
    b = scene_batch(*args, seed=1, batch_index=5, batch_size=8)
    c = scene_batch(*args, seed=1, batch_index=6, batch_size=8)
    assert all(np.array_equal(x.canvas, y.canvas) for x, y in zip(a, b))
    assert not all(np.array_equal(x.canvas, y.canvas) for x, y in zip(a, c))


def test_a_row_reads_left_to_right_with_similar_heights(mnist):
    rng = np.random.default_rng(0)
    idx = np.arange(4)
    s = row_scene(rng, mnist.x_test[idx], mnist.y_test[idx].astype(np.int64), CFG, (112, 160))
    assert len(s.boxes) == 4
    assert s.text == "".join(str(v) for v in mnist.y_test[idx])
    x_centres = (s.boxes[:, 0] + s.boxes[:, 2]) / 2
    assert (np.diff(x_centres) > 0).all()
    heights = s.boxes[:, 3] - s.boxes[:, 1]
    assert heights.max() / heights.min() < 1.6


def test_scattered_digits_overlap_lightly_at_most(mnist):
    rng = np.random.default_rng(1)
    s = scatter_scene(rng, mnist.x_test[:5], mnist.y_test[:5].astype(np.int64), CFG, (112, 160))
    for i in range(len(s.boxes)):
        for j in range(i):
            a, b = s.boxes[i], s.boxes[j]
            iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
            ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
            smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
            assert iw * ih / smaller <= 0.12 + 1e-6


def test_scene_set_uses_each_digit_once_and_has_every_kind(mnist):
    images, labels = mnist.x_test[:400], mnist.y_test[:400].astype(np.int64)
    a = build_scene_set(images, labels, CFG, seed=9, size=(112, 160), negatives=20)
    b = build_scene_set(images, labels, CFG, seed=9, size=(112, 160), negatives=20)
    assert np.array_equal(a.canvases, b.canvases)
    assert set(a.kinds) == {"single", "row", "scatter", "negative"}
    assert (a.kinds == "negative").sum() == 20 and (a.kinds == "single").sum() == 40
    assert np.array_equal(np.sort(np.concatenate(a.labels)), np.sort(labels))


def test_the_validation_split_shares_no_seed_or_digit_with_the_test_split(mnist):
    from locmnist.scenes import (TEST_SEED, VALIDATION_SEEDS, concat,
                                 detection_validation_split)
    from locmnist.training import split_digits

    assert TEST_SEED not in VALIDATION_SEEDS and len(set(VALIDATION_SEEDS)) > 1
    val = detection_validation_split(seeds=VALIDATION_SEEDS[:2], negatives=5)
    _, _, vx, vy = split_digits(DetectorConfig(), mnist)
    # each seed arranges every held-out train digit once, then its negatives
    assert (val.kinds == "negative").sum() == 10
    assert np.array_equal(np.sort(np.concatenate(val.labels)), np.sort(np.tile(vy, 2)))
    one = build_scene_set(vx, vy.astype(np.int64), CFG, VALIDATION_SEEDS[1], (112, 160), 5,
                          negative_fonts="train")
    assert np.array_equal(val.canvases[-len(one):], one.canvases)
    assert len(concat([one, one])) == 2 * len(one)


def test_aspect_squeezes_and_stretches_the_width_only(mnist):
    digit = mnist.x_train[0]
    plain = render_digit(digit, 40.0)
    for aspect in (0.7, 1.3):
        p = render_digit(digit, 40.0, aspect=aspect)
        assert p.shape[0] == plain.shape[0]
        assert abs(p.shape[1] - aspect * plain.shape[1]) <= 2


def test_aspect_jitter_leaves_the_splits_alone_when_off(mnist):
    """Without aspect jitter no random number is drawn for it: each digit takes the same
    three draws as before the option existed, so the published splits' scenes are those
    of the code before it. With it, the same seed gives other digits."""
    assert CFG.aspect_jitter == 0 and CFG.styles_fraction == 0
    ours, before = np.random.default_rng(5), np.random.default_rng(5)
    expected = (before.uniform(-CFG.max_rotation_deg, CFG.max_rotation_deg),
                before.uniform(-CFG.max_shear, CFG.max_shear), before.uniform(), 1.0)
    assert _draw_params(ours, CFG) == expected
    assert ours.uniform() == before.uniform()          # nothing more was drawn
    args = (mnist.x_train[:50], mnist.y_train[:50].astype(np.int64))
    plain = scene_batch(*args, CFG, seed=1, batch_index=0, batch_size=8)
    jittered = scene_batch(*args, CFG.replace(aspect_jitter=0.3), seed=1, batch_index=0,
                           batch_size=8)
    assert any(a.kind != "negative" and not np.array_equal(a.canvas, b.canvas)
               for a, b in zip(plain, jittered))
    with pytest.raises(ValueError, match="aspect_jitter"):
        CFG.replace(aspect_jitter=1.0)
