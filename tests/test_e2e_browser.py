"""End to end: `streamlit run app.py` on a free port, driven by Debian's Chromium.

Draws a 7 with mouse strokes (both models read 7) and an X (not a digit), writes "42"
(the detector reads the number, two boxes), trains a tiny model from the Train page while
switching pages, compares runs on History, and runs the correction loop: a "bubble" 1 the
model misreads, corrected, fine-tuned on from the Train page, then read right. Screenshots go to
$LOCMNIST_SCREENSHOTS (scripts/screenshots.py points it at docs/) or a temp dir.
Run alone with ``pytest -m e2e``.
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import REPO

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
# A training that finishes in well under a minute on 2 cores; screenshots.py makes it longer.
TINY_RUN = {"epochs": 2, "train_digits": 512, "val_digits": 256, "batch_size": 64,
            "widths": [4, 8, 8, 8], "dense_units": 16, "time_limit_s": 0}
# Fine-tuning small enough for CI (2 x 2,000 replayed digits), big enough to learn a style.
SMALL_FINETUNE = {"epochs": 2, "replay_digits": 2000, "batch_size": 64, "val_digits": 200,
                  "test_limit": 200}
SCREENSHOT_EPOCHS = int(os.environ.get("LOCMNIST_SCREENSHOT_EPOCHS", "1"))

pytestmark = pytest.mark.e2e


@pytest.fixture(autouse=True, scope="module")
def chromium_is_installed():
    """The suite needs the browser (.ci/run installs it): a missing one fails, not skips."""
    assert CHROMIUM.exists(), "needs Chromium at /usr/bin/chromium (apt-get install chromium)"


def model_path() -> Path:
    from locmnist.runs import default_model_path

    return default_model_path()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url} not healthy after {timeout} s")


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    d = Path(os.environ.get("LOCMNIST_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    d.mkdir(parents=True, exist_ok=True)
    print(f"screenshots in {d}")
    return d


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    port = free_port()
    env = {**os.environ, "LOCMNIST_RUNS": str(runs), "TF_CPP_MIN_LOG_LEVEL": "3",
           "LOCMNIST_TRAIN_OVERRIDES": os.environ.get("LOCMNIST_TRAIN_OVERRIDES")
           or json.dumps(TINY_RUN), "LOCMNIST_FINETUNE_OVERRIDES": json.dumps(SMALL_FINETUNE)}
    log = open(runs / "server.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py",
                             "--server.port", str(port), "--server.headless", "true",
                             "--server.address", "127.0.0.1"],
                            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc)
        yield {"url": url, "runs": runs}
    finally:
        from locmnist import jobs
        from locmnist import runs as runs_mod

        for run in runs_mod.list_runs(runs):  # never leave a trainer behind
            if run.live:
                jobs.cancel(run.dir, grace_s=5)
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, shots, request):
    context = browser.new_context(viewport={"width": 1280, "height": 1400})
    pg = context.new_page()
    pg.set_default_timeout(60_000)
    try:
        yield pg
    finally:  # what the browser showed last: the first thing to look at after a failure
        pg.screenshot(path=str(shots / f"last-{request.node.name}.png"))
        context.close()


def stroke(page, canvas, points) -> None:
    """One mouse stroke through ``points`` (canvas pixels)."""
    box = canvas.bounding_box()
    x0, y0 = box["x"], box["y"]
    page.mouse.move(x0 + points[0][0], y0 + points[0][1])
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(x0 + x, y0 + y, steps=12)
    page.mouse.up()


def metric_value(page, label: str):
    """The value of the st.metric labelled ``label``, once it shows a digit."""
    metric = page.locator('[data-testid="stMetric"]').filter(has_text=label).first
    return metric.locator('[data-testid="stMetricValue"]')


def settle(page, timeout_ms: int = 10_000) -> None:
    """Wait for a quiet moment (no script running, nothing stale) before a screenshot."""
    try:
        page.wait_for_function("""() => !document.querySelector('[data-testid="stStatusWidget"]')
                                  && !document.querySelector('[data-stale="true"]')""",
                               timeout=timeout_ms, polling=50)
    except Exception:  # a polling page may never be quiet for long; take it as it is
        pass


def wait_plotly(page, count: int) -> None:
    page.wait_for_function(
        f"document.querySelectorAll('.js-plotly-plot .main-svg').length >= {count}")


def test_draw_a_seven_and_see_seven_with_its_box(server, browser, page, shots):
    opened = time.monotonic()
    page.goto(server["url"])
    # The canvas lives in the component's shadow root; Playwright's CSS pierces it.
    canvas = page.locator(".st-key-predict_canvas canvas").last
    canvas.wait_for()
    stroke(page, canvas, [(70, 60), (210, 60), (120, 235)])  # a 7: top bar, then the stem
    value = metric_value(page, "Predicted digit")
    # The single-digit model's metric (the Number metric answers in the same rerun).
    page.wait_for_function("""() => [...document.querySelectorAll('[data-testid="stMetric"]')]
        .some(m => m.innerText.includes("Predicted digit") && /^\\d$/.test(
                   (m.querySelector('[data-testid="stMetricValue"]') || {}).innerText?.trim()))""",
                           timeout=90_000)
    first_s = time.monotonic() - opened
    settle(page)  # the empty canvas's placeholders are gone
    assert value.inner_text().strip() == "7"
    # One digit: the detector reads the same digit as the single-digit model.
    metric_value(page, "Number").filter(has_text="7").wait_for()
    overlay = page.locator('[data-testid="stImage"]').filter(has_text="single-digit model's box")
    overlay.locator("img").wait_for()
    assert overlay.locator("img").evaluate("i => i.naturalWidth") == 280
    wait_plotly(page, 1)

    # The next stroke (a serif on the 7's stem) updates the prediction. Its latency is printed,
    # not asserted: speed targets belong to the benchmark, and a loaded CI machine is noisy.
    before = page.locator('[data-testid="stImage"] img').first.get_attribute("src")
    stroke(page, canvas, [(100, 235), (140, 235)])
    started = time.monotonic()  # from the stroke's end, when the canvas sends the drawing
    page.wait_for_function(
        """src => { const i = document.querySelector('[data-testid="stImage"] img');
                   return i && i.getAttribute('src') !== src; }""", arg=before)
    warm_s = time.monotonic() - started
    assert value.inner_text().strip() == "7"
    print(f"first prediction {first_s:.1f} s after opening (model load included); "
          f"next stroke {warm_s:.2f} s after it ends")
    settle(page)
    page.screenshot(path=str(shots / "predict.png"))

    # A second visitor shares the server's cached model and gets the same answer.
    other = browser.new_context(viewport={"width": 1280, "height": 1000}).new_page()
    other.goto(server["url"])
    other_canvas = other.locator(".st-key-predict_canvas canvas").last
    other_canvas.wait_for(timeout=60_000)
    stroke(other, other_canvas, [(70, 60), (210, 60), (120, 235)])
    started = time.monotonic()
    metric_value(other, "Predicted digit").filter(has_text="7").wait_for(timeout=60_000)
    visitor_s = time.monotonic() - started
    other.context.close()
    print(f"second visitor: first prediction {visitor_s:.2f} s after the stroke ends")

    # The user's own box, dragged in rect mode, is compared with the prediction.
    page.get_by_text("Drag my own box").click()
    # Wait for the rerun that switches the canvas to rectangles, then for the component.
    page.wait_for_timeout(500)
    settle(page, 60_000)
    page.wait_for_timeout(3000)
    stroke(page, canvas, [(55, 45), (225, 250)])
    iou = metric_value(page, "IoU with your box")
    iou.wait_for()
    assert 0.5 < float(iou.inner_text()) <= 1.0
    assert value.inner_text().strip() == "7"  # the green box is not read as ink
    settle(page)
    page.screenshot(path=str(shots / "predict-box.png"))


def has_digit_output(path: Path) -> bool:
    """Whether a .keras file's model has the ``digit`` output (read from its JSON config)."""
    import zipfile

    with zipfile.ZipFile(path) as z:
        config = json.loads(z.read("config.json"))
    return "digit" in json.dumps(config.get("config", {}).get("output_layers"))


def test_draw_an_x_and_see_not_a_digit(server, page, shots):
    """An "X" is a letter, not a digit: the page says so and still shows the guesses, greyed."""
    assert has_digit_output(model_path()), f"{model_path().name} has no 'digit' output"
    page.goto(server["url"])
    canvas = page.locator(".st-key-predict_canvas canvas").last
    canvas.wait_for()
    stroke(page, canvas, [(75, 60), (205, 230)])
    stroke(page, canvas, [(205, 60), (75, 230)])
    value = metric_value(page, "Predicted digit")
    value.filter(has_text="Not a digit").wait_for(timeout=90_000)
    assert value.inner_text().strip() == "Not a digit"
    assert metric_value(page, "Best digit guess").inner_text().strip() != ""
    wait_plotly(page, 1)
    assert page.get_by_text("Probabilities (no digit chosen)").count() >= 1
    settle(page)
    page.screenshot(path=str(shots / "not_a_digit.png"))


# "42" as mouse strokes on the 560x280 canvas (CSS pixels): an open 4, then a 2.
FOUR = [[(90, 50), (80, 150), (190, 150)], [(170, 50), (170, 245)]]
TWO = [[(270, 95), (290, 60), (330, 45), (375, 60), (390, 100), (370, 145), (280, 235),
        (400, 235)]]


def test_draw_42_and_read_the_number(server, page, shots):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.goto(server["url"])
    canvas = page.locator(".st-key-predict_canvas canvas").last
    canvas.wait_for()
    for points in FOUR + TWO:
        stroke(page, canvas, points)
    number = metric_value(page, "Number")
    try:  # each stroke's end reruns the page; wait for the last answer
        number.filter(has_text=re.compile(r"^\s*42\s*$")).wait_for(timeout=90_000)
    except PlaywrightTimeout:
        pass  # the assertion below says what was read instead
    settle(page)
    assert number.inner_text().strip() == "42"
    boxed = page.locator('[data-testid="stImage"]').filter(has_text="read by the detector")
    assert "2 digits read by the detector" in boxed.inner_text()
    boxed.locator("img").wait_for()
    page.wait_for_function("""() => [...document.querySelectorAll('[data-testid="stImage"] img')]
                              .every(i => i.complete && i.naturalWidth > 0)""")
    assert boxed.locator("img").evaluate("i => i.naturalWidth") == 560
    wait_plotly(page, 1)
    page.wait_for_timeout(500)
    page.screenshot(path=str(shots / "number.png"))


def test_train_while_switching_pages_then_compare_in_history(server, page, shots):
    url = server["url"]
    page.goto(f"{url}/train")
    page.get_by_role("button", name="Start training").click()
    page.get_by_text("Started run").wait_for()
    run_id = page.get_by_text("Started run").inner_text().split()[-1].rstrip(".")

    # Leave the page mid-run and come back: the run goes on and is shown again.
    page.get_by_role("link", name="History").click()
    page.get_by_role("heading", name="History").wait_for()
    page.get_by_role("link", name="Train").click()
    page.get_by_text(f"Run {run_id}").first.wait_for()
    page.get_by_text("Epoch").or_(page.get_by_text("Starting")).first.wait_for()
    # Live curves: screenshot once SCREENSHOT_EPOCHS epochs are on disk, if the run is still going.
    from locmnist import runs as runs_mod

    history_file = server["runs"] / run_id / runs_mod.HISTORY
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and runs_mod.run_info(server["runs"] / run_id).live:
        if len(json.loads(history_file.read_text()).get("epoch", [])
               if history_file.exists() else []) >= SCREENSHOT_EPOCHS:
            wait_plotly(page, 4)
            page.wait_for_timeout(2500)  # the next poll draws the newest epoch
            settle(page)
            page.screenshot(path=str(shots / "train.png"))
            break
        page.wait_for_timeout(300)
    page.get_by_role("heading", name=f"Run {run_id}: completed").wait_for(timeout=180_000)
    page.get_by_text("Test accuracy").wait_for()
    page.get_by_role("button", name="Use this model").click()
    page.get_by_text("now use this model").wait_for()
    page.screenshot(path=str(shots / "train-done.png"), full_page=True)
    history = json.loads(history_file.read_text())
    assert history["epoch"] == list(range(1, len(history["epoch"]) + 1))

    page.get_by_role("link", name="History").click()
    page.get_by_role("heading", name="History").wait_for()
    # The newest run is shown beside the shipped default without a click.
    from playwright.sync_api import expect

    runs = page.locator(".st-key-history_runs")
    expect(runs).to_contain_text("Shipped default")
    expect(runs).to_contain_text(run_id)
    wait_plotly(page, 4)
    page.wait_for_timeout(800)
    page.screenshot(path=str(shots / "history.png"), full_page=True)
    assert page.get_by_role("button", name="History (CSV)").count() >= 1

    # The Predict page now uses the new model.
    page.get_by_role("link", name="Predict").click()
    expect(page.get_by_role("combobox", name="Model")).to_have_value(f"Run {run_id} (completed)")


def test_eight_sessions_predict_at_once_and_bad_uploads_get_a_clear_error(server, browser,
                                                                           tmp_path):
    """Eight browser sessions upload at the same moment: no errors, and every session
    shows the answer the library gives serially. A renamed HTML file gets st.error."""
    from PIL import Image, ImageDraw

    from locmnist.inference import Predictor

    digit = Image.new("L", (240, 200), 255)            # a dark 4 on white paper, off-centre
    ImageDraw.Draw(digit).line([(150, 20), (70, 120), (170, 120)], fill=20, width=14)
    ImageDraw.Draw(digit).line([(140, 60), (140, 185)], fill=20, width=14)
    good = tmp_path / "four.png"
    digit.save(good)
    bad = tmp_path / "page.png"
    bad.write_text("<html><body>not an image</body></html>")
    serial = Predictor.load(model_path()).predict(good)
    expected = (str(serial.label), f"{serial.confidence:.1%}")

    pages = []
    for _ in range(8):
        pg = browser.new_context(viewport={"width": 1280, "height": 1000}).new_page()
        pg.set_default_timeout(120_000)
        pg.goto(server["url"])
        pg.get_by_role("tab", name="Upload").click()
        pages.append(pg)
    inputs = [pg.locator('[data-testid="stFileUploaderDropzoneInput"]') for pg in pages]
    for box in inputs:               # all eight scripts now run at once on the server
        box.set_input_files([str(good)])
    answers = []
    for pg in pages:
        panel = pg.get_by_role("tabpanel")  # the shown tab, Upload (Draw has its own metric)
        metric = panel.locator('[data-testid="stMetric"]')
        metric.filter(has_text="Predicted digit").locator('[data-testid="stMetricValue"]') \
            .filter(has_text=re.compile(r"^\s*\d\s*$")).wait_for()
        value = metric.filter(has_text="Predicted digit").locator('[data-testid="stMetricValue"]')
        confidence = metric.filter(has_text="Confidence").locator('[data-testid="stMetricValue"]')
        answers.append((value.inner_text().strip(), confidence.inner_text().strip()))
        assert pg.locator('[data-testid="stException"]').count() == 0
    assert answers == [expected] * 8

    pg = pages[0]
    inputs[0].set_input_files([str(bad)])
    alert = pg.locator('[data-testid="stAlert"]').filter(has_text="page.png")
    alert.wait_for()
    assert "not a supported image file" in alert.inner_text()
    assert pg.locator('[data-testid="stException"]').count() == 0
    for pg in pages:
        pg.context.close()


# A "bubble" 1 (the outline of a 1 with a flag, one closed stroke), canvas CSS pixels: a
# style nothing in training looks like, so the shipped model misreads it.
BUBBLE_ONE = [(120, 245), (120, 95), (85, 120), (70, 95), (130, 40), (165, 40), (165, 245),
              (120, 245)]


def bubble_one(dx: float, scale: float, shear: float) -> list[tuple[float, float]]:
    """BUBBLE_ONE moved right by ``dx``, scaled about the canvas's middle row, slanted."""
    return [(140 + (x - 140) * scale + shear * (y - 140) + dx, 140 + (y - 140) * scale)
            for x, y in BUBBLE_ONE]


def drawn_png(points, pen: int = 18) -> bytes:
    """A drawing as the canvas sends it: black ink on a transparent 560x280 PNG."""
    import io

    from PIL import Image, ImageDraw

    from locmnist.canvas import CANVAS_PX, CANVAS_WIDTH

    img = Image.new("RGBA", (CANVAS_WIDTH, CANVAS_PX), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    draw.line(points, fill=(0, 0, 0, 255), width=pen, joint="curve")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def predicted_digit(page):
    """The single-digit model's answer once it shows one: a digit, "Not a digit" or "Not sure"."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function("""() => [...document.querySelectorAll('[data-testid="stMetric"]')]
            .some(m => m.innerText.includes("Predicted digit") && /^(\\d|Not a digit|Not sure)$/.test(
                       (m.querySelector('[data-testid="stMetricValue"]') || {}).innerText?.trim()))""",
                               timeout=90_000)
    except PlaywrightTimeout:  # say what the page showed instead
        shown = page.locator('[data-testid="stMain"]').inner_text()[:2000]
        raise AssertionError(f"no digit answer within 90 s; the page shows:\n{shown}") from None
    settle(page)
    page.wait_for_timeout(1000)  # the canvas may send the stroke once more: let it land
    settle(page)
    return metric_value(page, "Predicted digit").inner_text().strip()


def save_correction(page, digit: str, shot: Path | None = None) -> int:
    """'Wrong? It's a …': pick ``digit``, save; returns the correction's id.

    A late rerun (the canvas may send a stroke's drawing again) redraws the form and drops
    a pick not yet submitted; the page then says "Pick the right digit first", and the
    pick is made again (three tries)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect

    control = page.locator('[data-testid="stExpander"]').filter(has_text="Wrong? It's a …")
    combo = control.get_by_role("combobox", name="The right digit")
    saved = page.get_by_text(re.compile(rf"Saved correction #\d+ \(a {digit}\)"))
    for _ in range(3):
        if not combo.is_visible():
            control.get_by_text("Wrong? It's a …").click()
        combo.click()
        try:
            page.get_by_role("option", name=digit, exact=True).click(timeout=10_000)
        except PlaywrightTimeout:  # the dropdown closed under a rerun
            continue
        expect(combo).to_have_value(digit)
        control.get_by_role("button", name="Save the correction").click()
        saved.or_(page.get_by_text("Pick the right digit first.")).first.wait_for()
        page.wait_for_timeout(500)
        settle(page)  # the save's rerun is over: a warning left from a try before is gone
        if saved.count():
            if shot:
                page.screenshot(path=str(shot), full_page=True)
            return int(re.search(r"#(\d+)", saved.inner_text()).group(1))
    raise AssertionError(f"could not save a correction as {digit} in three tries")


def wait_empty(page) -> None:
    """Wait until the page answers an empty canvas: no digit, nothing to correct."""
    from playwright.sync_api import expect

    expect(metric_value(page, "Predicted digit")).to_have_text("—", timeout=60_000)
    expect(page.get_by_text("Wrong? It's a …")).to_have_count(0, timeout=60_000)
    # The "—" can show while the script still runs (a page switch, a new model loading):
    # a stroke drawn then can land on a canvas about to be redrawn, so wait for quiet.
    settle(page, timeout_ms=60_000)


def stroke_until_answered(page, canvas, points) -> None:
    """``stroke``, drawn again (the same points) while the page still answers nothing after
    20 s: a stroke that lands as a rerun redraws the canvas is lost (seen under load right
    after switching to the fine-tuned model: the canvas was empty a minute later)."""
    from playwright.sync_api import expect

    for _ in range(3):
        stroke(page, canvas, points)
        try:
            expect(metric_value(page, "Predicted digit")).not_to_have_text("—", timeout=20_000)
            return
        except AssertionError:
            continue


def reset_canvas(page, canvas) -> None:
    """The canvas toolbar's reset, then the empty page. A click that lands while a rerun
    redraws the component is lost (seen under load: the drawing stayed for a minute), so
    the reset is clicked again while the page still shows an answer (three tries)."""
    from playwright.sync_api import expect

    for _ in range(3):
        canvas.hover()
        page.get_by_role("button", name="Reset canvas & history").click()
        try:
            expect(metric_value(page, "Predicted digit")).to_have_text("—", timeout=20_000)
            break
        except AssertionError:
            continue
    wait_empty(page)


def test_correct_a_new_style_fine_tune_and_see_it_read_right(server, page, shots):
    """The correction loop as a user runs it: the model misreads a drawn "bubble" 1; the
    user says it is a 1 (three drawings through the page, seven more stored the same way
    through the library), downloads their corrections, fine-tunes from the Train page,
    uses the new model, and a new bubble 1 reads 1."""
    from playwright.sync_api import expect

    from locmnist.corrections import DB_NAME, CorrectionStore
    from locmnist.labelled import load_labelled

    page.goto(server["url"])
    canvas = page.locator(".st-key-predict_canvas canvas").last
    canvas.wait_for()
    saved = []
    for i, variant in enumerate([(0, 1.0, 0.0), (150, 0.8, -0.15), (330, 0.9, 0.08)]):
        if i:  # a fresh drawing: the canvas toolbar's reset, then the empty page
            reset_canvas(page, canvas)
        stroke(page, canvas, bubble_one(*variant))
        answer = predicted_digit(page)
        assert answer != "1", f"the model already reads a bubble 1 ({answer}): pick a new style"
        if i == 0:
            saved.append(save_correction(page, "1", shot=shots / "correction.png"))
        else:
            saved.append(save_correction(page, "1"))
    store = CorrectionStore(server["runs"] / DB_NAME)
    assert [(c.id, c.label, c.source) for c in store.corrections()] == \
        [(rid, 1, "drawn") for rid in saved]
    # Seven more, stored as the page stores a drawing (its PNG, label 1, source "drawn"), with
    # the whole image as box, as under a "Not a digit" answer: fine-tuning crops to the ink.
    for variant in [(-30, 1.05, 0.1), (60, 0.7, -0.2), (200, 1.0, -0.05), (260, 0.75, 0.15),
                    (390, 0.85, -0.1), (100, 0.95, 0.05), (420, 0.65, 0.0)]:
        store.add(drawn_png(bubble_one(*variant)), 1, (0.0, 0.0, 1.0, 1.0),
                  model="default.keras", source="drawn")

    page.get_by_role("link", name="Train").click()
    page.get_by_text("10 corrections stored").wait_for()
    # This visitor's own three corrections, as the zip train --extra reads.
    with page.expect_download() as download:
        page.get_by_role("button", name="Download your 3 corrections (zip)").click()
    examples, problems = load_labelled(download.value.path())
    assert problems == [] and [e.label for e in examples] == [1, 1, 1]
    assert [e.png for e in examples] == [c.png for c in store.corrections(ids=saved)]

    page.get_by_role("button", name="Fine-tune on corrections").click()
    started = page.get_by_text("Started fine-tuning run")
    started.wait_for()
    run_id = started.inner_text().split()[-1].rstrip(".")
    t0 = time.monotonic()
    page.get_by_role("heading", name=f"Run {run_id}: completed").wait_for(timeout=300_000)
    print(f"fine-tuning run {run_id}: {time.monotonic() - t0:.0f} s from Start to completed")
    table = page.locator("table").filter(has_text="held-out corrections (n=2)")
    table.wait_for()
    rows = [r.inner_text().split("\t") for r in table.locator("tbody tr").all()]
    assert [r[0] for r in rows] == ["held-out corrections (n=2)", "test split (n=200)"]
    page.get_by_role("button", name="Use this model").click()
    page.get_by_text("now use this model").wait_for()
    settle(page)
    page.screenshot(path=str(shots / "finetune-done.png"), full_page=True)

    page.get_by_role("link", name="Predict").click()
    expect(page.get_by_role("combobox", name="Model")).to_have_value(f"Run {run_id} (completed)")
    wait_empty(page)  # a new, empty canvas
    canvas = page.locator(".st-key-predict_canvas canvas").last
    canvas.wait_for()
    # A place, size and slant not corrected.
    stroke_until_answered(page, canvas, bubble_one(230, 0.85, -0.08))
    assert predicted_digit(page) == "1"
    page.screenshot(path=str(shots / "correction-learned.png"))
