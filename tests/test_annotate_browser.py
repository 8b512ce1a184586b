"""End to end in a real browser: headless Chromium (Selenium) answers every query of a SLIM_Val run on
waterbirds-synth with the keyboard, served by ``harness.annotation.server.start`` (waitress), and the SLIM run on
those answers equals the run with the simulated oracle's noise-free answers. Along the way: the question
in plain words, the keyboard hint readable on the chosen button, no request the server answers 404.

Needs the Debian packages chromium and chromium-driver (``.ci/run`` installs them) and selenium (the
``test`` extra); without them the test is skipped, saying what is missing. Set ANNOTATE_SCREENSHOT=PATH
to save a screenshot of the page (docs/annotate.png is one).
"""
from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import threading

import pytest

from harness.annotation.server import AnswerStore, build_task, open_listener, start
from harness.core.errors import HarnessError
from harness.experiments.runner import execute, make_config
from simulated_oracle import load_log

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
KEYS = {"yes": "y", "no": "n", "not_sure": "s"}
# a narrow untrained-start model keeps the reference model's training short; figures are not needed here
FAST = {"pretrained": "none", "width": 0.25, "figures": False}


def require_browser() -> None:
    """pytest.skip, saying what is missing, unless selenium, Chromium and its driver are all there."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.skip("selenium is not installed (pip install -e .[test])")
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            pytest.skip(f"no browser: {path} not found (apt-get install -y chromium chromium-driver, which "
                        f"provides {package})")


def browser():
    """A headless Chromium driven by Selenium, and its temporary profile folder."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1100,900",
                 f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    return driver, profile


def contrast(foreground: str, background: str) -> float:
    """WCAG contrast ratio of two CSS 'rgb(r, g, b)' / 'rgba(r, g, b, a)' colours (opaque ones)."""
    def luminance(colour: str) -> float:
        channels = [int(c) / 255 for c in re.findall(r"[\d.]+", colour)[:3]]
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    high, low = sorted((luminance(foreground), luminance(background)), reverse=True)
    return (high + 0.05) / (low + 0.05)


class Statuses(logging.Handler):
    """The status of every request the server answered (its access log)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def served(tmp_path, monkeypatch):
    """The queries of a tiny SLIM_Val run, served as ``annotate`` serves them on a free local port, in a
    thread (the reference model is trained for two epochs: the page and the runs are under test here, not
    the model)."""
    import harness.engine.context

    require_browser()  # before the expensive part

    erm_defaults = harness.engine.context.run_hparams
    monkeypatch.setattr(harness.engine.context, "run_hparams", lambda *a: dict(erm_defaults(*a), epochs=2))

    config = make_config(dataset="waterbirds-synth", method="slim-val", arch="resnet18", scale="tiny", overrides=FAST,
                         device="cpu")
    task = build_task(config, tmp_path, show_progress=False)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = start(task, tmp_path / "annotations", open_listener("127.0.0.1", port), "127.0.0.1", out=io.StringIO())
    statuses = Statuses()
    access = logging.getLogger("harness.annotation.server.access")
    access.addHandler(statuses)
    level = access.level
    access.setLevel(logging.INFO)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield task, AnswerStore(tmp_path / "annotations", task), f"http://127.0.0.1:{port}/", statuses
    server.stop()
    access.removeHandler(statuses)
    access.setLevel(level)
    thread.join(10)


def test_browser_answers_every_query_and_slim_runs_on_them(served, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    task, store, url, statuses = served
    simulated = make_config(dataset="waterbirds-synth", method="slim-val", arch="resnet18", scale="tiny",
                            overrides={**FAST, "oracle_flip_prob": 0.0}, device="cpu")
    sim_path = execute(simulated, tmp_path, show_progress=False)
    sim_record = json.loads(sim_path.read_text())
    truth = load_log(sim_path.parent / sim_record["run_id"] / "queries.jsonl")
    assert [e.instance_id for e in truth] == [q.instance_id for q in task.queries]  # the same queries
    assert all(e.answer == e.true_answer for e in truth)  # noise-free
    assert [q.suggested for q in task.queries] == [e.true_answer for e in truth]  # Label Studio's pre-annotations
    assert [q.aiou for q in task.queries] == pytest.approx([e.aiou for e in truth])
    assert {q.question for q in task.queries} == {"Is the model looking at the bird?"}

    driver, profile = browser()
    try:
        wait = WebDriverWait(driver, 30)
        driver.get(url)
        driver.find_element(By.ID, "name").send_keys("tester", Keys.ENTER)
        item = driver.find_element(By.ID, "item-screen")
        body = driver.find_element(By.TAG_NAME, "body")

        def showing(instance_id):
            wait.until(lambda d: item.is_displayed() and item.get_attribute("data-instance") == str(instance_id))

        n = len(task.queries)
        for k, entry in enumerate(truth):
            showing(entry.instance_id)
            assert driver.find_element(By.ID, "progress").text == f"{k} of {n} answered"
            assert driver.find_element(By.ID, "class-name").text == task.queries[k].class_name
            assert driver.find_element(By.ID, "question").text == "Is the model looking at the bird?"
            wait.until(lambda d: d.execute_script(
                "return ['overlay', 'plain'].every(id => document.getElementById(id).naturalWidth > 0)"))
            if k == 1:
                if os.environ.get("ANNOTATE_SCREENSHOT"):
                    driver.save_screenshot(os.environ["ANNOTATE_SCREENSHOT"])
                wrong = "no" if entry.answer.value == "yes" else "yes"
                body.send_keys(KEYS[wrong])  # a wrong answer, then back with the arrow key to change it
                showing(truth[2].instance_id)
                body.send_keys(Keys.ARROW_LEFT)
                showing(entry.instance_id)
                assert store.answers("tester")[entry.instance_id].answer.value == wrong
                # the chosen button keeps its keyboard hint readable (it was white on light grey)
                chosen = driver.find_element(By.CSS_SELECTOR, "button.chosen")
                assert chosen.get_attribute("data-answer") == wrong
                hint = chosen.find_element(By.TAG_NAME, "kbd")
                assert hint.is_displayed() and hint.text == KEYS[wrong]
                assert contrast(hint.value_of_css_property("color"),
                                hint.value_of_css_property("background-color")) >= 4.5
            body.send_keys(KEYS[entry.answer.value])
        wait.until(lambda d: d.find_element(By.ID, "done").is_displayed())
        assert driver.find_element(By.ID, "done").text == f"All {n} questions answered."
        assert driver.find_element(By.ID, "progress").text == f"{n} of {n} answered"
        assert driver.find_element(By.ID, "who").text == "annotator: tester"
        # a reload resumes: every item answered, straight to the end
        driver.get(url)
        driver.find_element(By.ID, "name").send_keys("tester", Keys.ENTER)
        wait.until(lambda d: d.find_element(By.ID, "done").is_displayed())
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)

    assert statuses.lines and not [line for line in statuses.lines if not line.endswith(" 200")]  # no 404
    log_path = store.path("tester")
    answers = list(store.answers("tester").values())
    assert len(load_log(log_path)) == len(truth) + 1  # the wrong answer and its correction are both lines
    assert sorted((e.instance_id, e.answer) for e in answers) == sorted((e.instance_id, e.answer) for e in truth)
    assert all(e.who == "tester" and e.attention == task.attention and 0 < e.seconds < 60 for e in answers)
    images = {q.instance_id: q.image_id for q in task.queries}
    assert all(e.image == images[e.instance_id] and e.answered_at for e in answers)
    assert all(e.image.startswith(f"waterbirds-synth/val/{e.instance_id} sha256:") for e in answers)

    human = make_config(dataset="waterbirds-synth", method="slim-val", arch="resnet18", scale="tiny",
                        overrides={**FAST, "oracle": f"answers:{log_path}"}, device="cpu")
    record = json.loads(execute(human, tmp_path, show_progress=False).read_text())
    oracle = record["details"]["oracle"]
    assert oracle["kind"] == "human" and oracle["annotators"] == ["tester"] and oracle["queries"] == n
    assert record["cost"]["annotation_seconds"] == pytest.approx(sum(e.seconds for e in answers))
    assert sim_record["details"]["oracle"]["kind"] == "simulated"
    assert record["metrics"] == sim_record["metrics"]
    assert record["model_selection"] == sim_record["model_selection"]
    same = {k: v for k, v in record["details"].items() if k != "oracle"}
    assert same == {k: v for k, v in sim_record["details"].items() if k != "oracle"}

    # the same answers for another split (SLIM_Tr asks about train) are refused before any training
    other = make_config(dataset="waterbirds-synth", method="slim-tr", arch="resnet18", scale="tiny",
                        overrides={**FAST, "oracle": f"answers:{log_path}"}, device="cpu")
    with pytest.raises(HarnessError, match="another reference model, split"):
        execute(other, tmp_path, show_progress=False)
