"""Fine-tuning on corrections: the hold-out split, the mix, the CLI, ``train --extra``,
and the loop end to end (a style the model misreads, 10 corrections, fine-tune)."""
import json
import zipfile

import numpy as np
import pytest

from locmnist import runs
from locmnist.corrections import CorrectionStore
from locmnist.finetune import FinetuneSettings, split_holdout
from locmnist.training import mix_in
from tests.helpers import REPO, run_cli, tiny_config
from tests.new_style import as_pngs, hollow

SHIPPED = REPO / "models" / "default.keras"


def test_holdout_split_is_seeded_disjoint_and_keeps_one_of_each():
    train, held = split_holdout(10, 0.3, seed=0)
    assert len(train) == 7 and len(held) == 3
    assert sorted([*train, *held]) == list(range(10))
    assert [a.tolist() for a in split_holdout(10, 0.3, 0)] == [train.tolist(), held.tolist()]
    assert [len(a) for a in split_holdout(2, 0.3, 0)] == [1, 1]
    assert [len(a) for a in split_holdout(3, 0.9, 0)] == [1, 2]
    with pytest.raises(ValueError, match="at least 2 corrections"):
        split_holdout(1, 0.3, 0)


def test_mix_in_repeats_the_extra_digits_to_their_share():
    tx, ty = np.zeros((900, 28, 28), np.uint8), np.zeros(900, np.uint8)
    ex, ey = np.full((10, 28, 28), 255, np.uint8), np.full(10, 7, np.uint8)
    mx, my = mix_in(tx, ty, (ex, ey), share=0.1)
    assert len(mx) == 1000 and (my == 7).sum() == 100 and (mx[my == 7] == 255).all()
    assert len(mix_in(tx, ty, (ex[:1], ey[:1]), share=0.001)[0]) == 901  # at least once
    assert mix_in(tx, ty, None, 0.1)[0] is tx


def test_distillation_loss_is_the_label_cross_entropy_plus_the_teachers_kl():
    from locmnist.distill import DistillationLoss, soften

    student = np.array([[0.7, 0.2, 0.1] + [0.0] * 7, [0.1, 0.8, 0.1] + [0.0] * 7], np.float32)
    teacher = np.array([[0.9, 0.05, 0.05] + [0.0] * 7, [0.1, 0.8, 0.1] + [0.0] * 7], np.float32)
    hard = np.eye(10, dtype=np.float32)[[0, 1]]
    ce = -np.log([0.7, 0.8])
    loss = DistillationLoss(weight=0.5, temperature=2.0)
    # No soft half (a correction, or a digit the teacher misreads): the cross-entropy alone.
    plain = np.concatenate([hard, np.zeros_like(hard)], 1)
    np.testing.assert_allclose(loss.call(plain, student), ce, rtol=1e-5)
    # The teacher's soft targets: + 0.5 x T^2 x KL, which is 0 where the student agrees.
    soft = np.asarray(soften(teacher, 2.0))
    q = np.asarray(soften(student, 2.0))
    kl = (soft * (np.log(np.clip(soft, 1e-7, 1)) - np.log(np.clip(q, 1e-7, 1)))).sum(1)
    assert kl[0] > 0.01 and kl[1] < 1e-6
    got = loss.call(np.concatenate([hard, soft], 1), student)
    np.testing.assert_allclose(got, ce + 0.5 * 4 * kl, rtol=1e-4, atol=1e-6)


def test_prior_shift_undoes_the_corrections_share_of_their_label():
    from locmnist.distill import DistillationLoss, prior_shift

    shift = prior_shift(np.repeat(np.arange(10), 10), np.ones(5, np.int64), share=0.4)
    # Label 1 is 0.6 x 10% + 40% = 46% of the mix, 4.6 times its share among replayed digits.
    np.testing.assert_allclose(shift, np.log([0.6] + [4.6] + [0.6] * 8), rtol=1e-6)
    # So a student answering 1 as often as MNIST does loses less than without the shift.
    p = np.full((1, 10), 0.5 / 9, np.float32)
    p[0, 1] = 0.5
    y = np.concatenate([np.eye(10, dtype=np.float32)[[1]], np.zeros((1, 10), np.float32)], 1)
    shifted = float(DistillationLoss(0.0, 2.0, shift).call(y, p)[0])
    assert shifted < float(DistillationLoss(0.0, 2.0).call(y, p)[0]) == pytest.approx(-np.log(0.5))


def test_mixed_batches_hold_the_corrections_share_and_the_teachers_targets(mnist):
    from locmnist.distill import mixed_batches
    from locmnist.model_files import load_model_file

    teacher, cfg = load_model_file(SHIPPED)
    cfg = cfg.replace(batch_size=32)
    replay = (mnist.x_train[:64], mnist.y_train[:64])
    corrections = (hollow(mnist.x_test[mnist.y_test == 1][:3]), np.ones(3, np.uint8))
    x, y, w = next(iter(mixed_batches(replay, corrections, cfg, 0.25, teacher, 2.0)))
    assert x.shape == (32, 75, 75, 1) and y["classification"].shape == (32, 20)
    hard, soft = y["classification"][:, :10].numpy(), y["classification"][:, 10:].numpy()
    # The last 8 (a quarter) are corrections: label 1, a digit, no teacher's targets.
    assert (hard[-8:].argmax(1) == 1).all() and (soft[-8:] == 0).all()
    assert (y["digit"].numpy()[-8:] == 1).all() and (w["classification"].numpy()[-8:] == 1).all()
    # Replayed digits the teacher reads right carry its soft targets, which sum to 1;
    # negatives (no digit, class weight 0) and misread digits carry none.
    sums = soft[:-8].sum(1)
    assert np.allclose(sums[sums > 0], 1, atol=1e-5) and (sums > 0).sum() >= 16
    negative = w["classification"].numpy()[:-8] == 0
    assert negative.sum() >= 1 and (sums[negative] == 0).all()


def test_l2_sp_penalizes_distance_from_the_start_and_stays_out_of_the_model_file(tmp_path):
    import zipfile as zf

    from locmnist.anchor import anchor_to_start
    from locmnist.model import build_model
    from locmnist.model_files import load_model_file

    model = build_model(tiny_config())
    for layer in model.layers:
        layer.trainable = layer.name == "classification"
    assert anchor_to_start(model, 0.5) == 2                   # its kernel and bias
    assert float(sum(model.losses)) == 0                      # at the start: no penalty
    kernel = model.get_layer("classification").kernel
    kernel.assign(kernel + 0.1)
    assert float(sum(model.losses)) == pytest.approx(0.5 * 0.01 * kernel.numpy().size, rel=1e-4)
    # Set on the variables, not the layers: the file is the plain model, which the checked
    # loader (that refuses unknown regularizers) reads, and fine-tunes again like any other.
    model.save(tmp_path / "m.keras")
    with zf.ZipFile(tmp_path / "m.keras") as z:
        assert "TowardStart" not in z.read("config.json").decode()
    load_model_file(tmp_path / "m.keras")
    assert anchor_to_start(model, 0.0) == 0 and not model.losses


def test_settings_are_checked():
    with pytest.raises(ValueError):
        FinetuneSettings(correction_share=1.0)
    with pytest.raises(ValueError):
        FinetuneSettings(replay_digits=10, batch_size=64)
    with pytest.raises(ValueError):
        FinetuneSettings(l2_sp=-1.0)


@pytest.fixture(scope="module")
def corrections(tmp_path_factory, mnist):
    """12 hollow 1s in a corrections database and as an exported zip."""
    d = tmp_path_factory.mktemp("corrections")
    pngs, boxes = as_pngs(hollow(mnist.x_test[mnist.y_test == 1][:12]), seed=3)
    store = CorrectionStore(d / "c.sqlite")
    for png, box in zip(pngs, boxes):
        store.add(png, 1, tuple(float(v) for v in box), model="test")
    store.export_zip(d / "c.zip")
    return store.path, d / "c.zip"


TINY = ["--epochs", "1", "--replay-digits", "128", "--batch-size", "64", "--val-digits", "64",
        "--test-limit", "100"]


def test_cli_finetune_writes_a_run_with_before_and_after(tmp_path, corrections):
    db, _ = corrections
    out = tmp_path / "run"
    r = run_cli("finetune", "--from", str(SHIPPED), "--corrections", str(db), "--out", str(out),
                "--no-progress", *TINY)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "held-out corrections (n=2)" in r.stderr
    for name in (runs.CONFIG, runs.HISTORY, runs.MODEL, runs.STATUS, runs.FINETUNE):
        assert (out / name).is_file(), name
    assert json.loads((out / runs.STATUS).read_text())["state"] == "completed"
    metrics = json.loads((out / runs.METRICS).read_text())
    ft = metrics["finetune"]
    assert (ft["n_corrections"], ft["trained_on"], ft["held_out"]) == (12, 10, 2)
    for when in ("before", "after"):
        assert ft[when]["held_out"]["n"] == 2 and ft[when]["test"]["n"] == 100
    assert metrics["accuracy"] == ft["after"]["test"]["accuracy"] and metrics["n"] == 100
    # The run's config is the starting model's architecture with the fine-tuning's recipe.
    cfg = json.loads((out / runs.CONFIG).read_text())
    shipped = json.loads(SHIPPED.with_name("default.config.json").read_text())
    assert cfg["widths"] == shipped["widths"] and cfg["train_digits"] == 128


def test_cli_finetune_bad_input_is_one_clear_line(tmp_path, corrections):
    r = run_cli("finetune", "--corrections", str(tmp_path / "nothing.sqlite"), *TINY)
    assert r.returncode == 2 and r.stderr.startswith("error: no corrections at")
    one = tmp_path / "one"
    one.mkdir()
    with zipfile.ZipFile(corrections[1]) as z:
        (one / "a.png").write_bytes(z.read("images/000001.png"))
    (one / "labels.csv").write_text("file,label\na.png,1\n")
    r = run_cli("finetune", "--corrections", str(one), *TINY)
    assert r.returncode == 2 and "at least 2 corrections" in r.stderr
    assert "Traceback" not in r.stderr


def test_train_extra_reads_the_exported_zip(tmp_path, corrections):
    _, zip_path = corrections
    out = tmp_path / "run"
    r = run_cli("train", "--preset", "quick", "--epochs", "1", "--train-digits", "256",
                "--val-digits", "64", "--batch-size", "64", "--widths", "4,8,8,8",
                "--dense-units", "16", "--time-limit", "0", "--out", str(out), "--no-progress",
                "--extra", str(zip_path), "--extra-share", "0.5")
    assert r.returncode == 0, r.stderr
    assert f"mixing in 12 extra images from {zip_path}" in r.stderr
    # 256 MNIST digits + the 12 extra ones x 21 (half the mix) = 508 digits: 7 steps of 64
    assert json.loads((out / runs.STATUS).read_text())["steps"] == 7


@pytest.mark.slow
def test_the_correction_loop_end_to_end(tmp_path, mnist):
    """Hollow 1s, a style the shipped model misreads; a user corrects 10 of them (with
    the model's own box, as the app records them); after fine-tuning (the default
    recipe, scored on 1,000 test canvases) other hollow 1s read right and the test split
    barely moves."""
    from locmnist.finetune import finetune
    from locmnist.inference import Predictor
    from locmnist.labelled import Labelled, score_examples

    ones = mnist.x_test[mnist.y_test == 1]
    pngs, boxes = as_pngs(hollow(ones[:110]), seed=1)
    start = Predictor.load(SHIPPED)
    judge = [Labelled(f"hollow 1 #{i}", png, 1, tuple(map(float, box)))
             for i, (png, box) in enumerate(zip(pngs[10:], boxes[10:]))]
    before = score_examples(start, judge)["accuracy"]
    assert before <= 0.5, "the shipped model reads hollow 1s now: pick another new style"

    store = CorrectionStore(tmp_path / "corrections.sqlite")
    for png in pngs[:10]:
        # As the Predict page records it: the model's box, or the whole image under a
        # "Not a digit" or "Not sure" answer (fine-tuning crops to the ink inside).
        box = start.predict(png).box_normalized or (0.0, 0.0, 1.0, 1.0)
        store.add(png, 1, box, model="shipped", source="drawn")
    settings = FinetuneSettings(val_digits=200, test_limit=1000)  # the default recipe
    result = finetune(SHIPPED, store.path, tmp_path / "run", settings)
    assert result.status == "completed"

    after = score_examples(Predictor.load(result.model_path), judge)
    ft = result.metrics["finetune"]
    print(f"hollow 1s {before:.1%} -> {after['accuracy']:.1%}; held-out corrections "
          f"{ft['before']['held_out']['accuracy']:.0%} -> {ft['after']['held_out']['accuracy']:.0%}"
          f"; test split (1000) {ft['before']['test']['accuracy']:.2%} -> "
          f"{ft['after']['test']['accuracy']:.2%}; {result.metrics['train_seconds']:.0f} s")
    # The default recipe (closer look and outputs trained, distillation from the starting
    # model, corrections 60% of each batch; 8 trained on, 2 held out) took these hollow 1s
    # from 32% to 90% here at learning rate 2e-3, the test split 99.10% -> 99.00% on 1000,
    # with the previous default model (the same with 7 trained on and 3 held out, the
    # default before); with the default model of 2026-12-07 at 1.5e-3, 28% -> 93% and
    # 99.00% -> 98.80%. The bar leaves room
    # for run-to-run noise (TensorFlow's CPU kernels are not bitwise deterministic): well
    # past the 10%-share recipe of before, which reached 70%.
    assert after["accuracy"] >= 0.85
    assert ft["after"]["held_out"]["accuracy"] >= 1 / 2     # 2 held out: at most one missed
    assert ft["after"]["test"]["accuracy"] >= ft["before"]["test"]["accuracy"] - 0.005
