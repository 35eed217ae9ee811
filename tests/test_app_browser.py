"""End to end in a real browser: `lvlmsim app` serves the explorer, headless Chromium visits every page, changes a
widget, and each page must render its charts with no exception block. Screenshots go to pytest's tmp dir."""

from __future__ import annotations

import importlib.util
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

CHROMIUM = "/usr/bin/chromium"
CHROME_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
CHART = '[data-testid="stVegaLiteChart"]'
EXCEPTION = '[data-testid="stException"]'
REPO = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _missing() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is missing (pip install playwright; its bundled driver, no browser download)"
    if importlib.util.find_spec("streamlit") is None:
        return "streamlit is missing (pip install 'lvlmsim[app]')"
    return None


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the server's own process group (it was started in a new session), SIGKILL after 10 s: Streamlit
    sometimes lingers on SIGTERM, and nothing it spawned may outlive the run."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    try:  # stragglers of the group, if any
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    """`lvlmsim app` on a free port of 127.0.0.1; bounded wait for its health check; always killed."""
    reason = _missing()
    if reason:
        pytest.skip(reason)
    port = _free_port()
    cmd = [sys.executable, "-m", "lvlmsim", "app", "--port", str(port), "--address", "127.0.0.1", "--",
           "--server.fileWatcherType", "none"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"lvlmsim app exited early: {proc.stdout.read().decode(errors='replace')[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("lvlmsim app did not answer its health check within 60 s")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def page(server, tmp_path_factory):
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(str(profile), executable_path=CHROMIUM, args=CHROME_ARGS,
                                                    headless=True, viewport={"width": 1400, "height": 1000})
        ctx.set_default_timeout(30_000)
        pg = ctx.pages[0] if ctx.pages else ctx.new_page()
        pg.goto(server)
        idle(pg)
        yield pg
        ctx.close()


# Counts finished reruns: a MutationObserver on the app root's script state (running -> notRunning).
WATCH_RUNS = """() => {
  if (window.__runs !== undefined) return;
  window.__runs = 0;
  const app = document.querySelector('[data-testid="stApp"]');
  new MutationObserver(() => {
    if (app.getAttribute('data-test-script-state') === 'notRunning') window.__runs += 1;
  }).observe(app, {attributes: true, attributeFilter: ['data-test-script-state']});
}"""


def idle(page) -> None:
    """No rerun in flight, and the browser painted the last one."""
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]')
    page.evaluate(WATCH_RUNS)
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")


def rerun_after(page, action) -> None:
    """Do `action` (a widget change) and wait for the rerun it causes to finish and paint."""
    page.evaluate(WATCH_RUNS)
    before = page.evaluate("() => window.__runs")
    action()
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function("(n) => window.__runs > n", arg=before, timeout=15_000)
    except PlaywrightTimeout:
        # A rerun fast enough to flip running -> notRunning within one observer batch can be missed on a loaded
        # machine; the callers then check the page shows the API's new numbers, so nothing is taken on trust.
        pass
    idle(page)


def go(page, title: str) -> None:
    """Click the page's link in the top navigation (keeps the session, so the sidebar setup carries over)."""
    page.get_by_role("link", name=title, exact=True).first.click()
    page.wait_for_selector(f'h1:has-text("{title}")')
    idle(page)


def set_number(page, label: str, value) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(str(value))
    rerun_after(page, lambda: box.press("Enter"))


def metric(page, label: str) -> str:
    m = page.locator('[data-testid="stMetric"]').filter(has=page.get_by_text(label, exact=True)).first
    return m.locator('[data-testid="stMetricValue"]').inner_text().strip()


def metric_becomes(page, label: str, want: str, timeout_s: float = 20.0) -> str:
    """The metric's shown value once it equals `want` (polled, so a slow rerun is waited for), else the last value."""
    deadline = time.monotonic() + timeout_s
    got = metric(page, label)
    while got != want and time.monotonic() < deadline:
        page.wait_for_timeout(200)
        got = metric(page, label)
    return got


def charts_ok(page, at_least: int = 1) -> None:
    page.wait_for_selector(CHART, state="visible")
    n = page.locator(CHART).count()
    assert n >= at_least, f"{n} charts rendered, expected {at_least}"
    # vega-embed painted something (a canvas or an svg) inside every chart
    painted = page.locator(f"{CHART} canvas, {CHART} svg").count()
    assert painted >= at_least
    assert page.locator(EXCEPTION).count() == 0, page.locator(EXCEPTION).first.inner_text()


def test_every_page_renders_and_reacts(page, tmp_path):
    import lvlmsim

    sys.path.insert(0, str(REPO / "app"))
    from explorer.fmt import fmt_time

    shots = tmp_path / "screenshots"
    shots.mkdir()

    # overview: the headline follows a sidebar change
    assert page.locator(EXCEPTION).count() == 0
    set_number(page, "Prompt tokens", 256)
    want = fmt_time(lvlmsim.estimate(prompt_tokens=256).ttft_s)
    assert metric_becomes(page, "TTFT", want) == want
    page.screenshot(path=str(shots / "overview.png"))

    # roofline: change the image size (LLaVA-1.5 resizes to 336, so switch to a dynamic-resolution model first)
    go(page, "Roofline")
    charts_ok(page)
    page.get_by_label("Model", exact=True).click()
    rerun_after(page, lambda: page.get_by_role("option", name="qwen2-vl-7b", exact=True).first.click())
    set_number(page, "Image width (px)", 896)
    charts_ok(page)
    want = lvlmsim.estimate("qwen2-vl-7b", "h100-sxm", image_size=(896, 336), prompt_tokens=256).ttft_s
    assert metric_becomes(page, "TTFT", fmt_time(want)) == fmt_time(want)
    page.screenshot(path=str(shots / "roofline.png"))

    go(page, "Request breakdown")
    charts_ok(page, 5)
    set_number(page, "Images per request", 3)
    charts_ok(page, 5)
    page.screenshot(path=str(shots / "breakdown.png"))

    go(page, "Serving simulation")
    if page.get_by_role("button", name="Run simulation").count():
        page.get_by_label("Requests", exact=True).fill("30")
        rerun_after(page, lambda: page.get_by_role("button", name="Run simulation").click())
        page.wait_for_selector(CHART, state="visible", timeout=90_000)
        charts_ok(page, 3)
    else:
        assert page.locator('[data-testid="stAlert"]').count() >= 1
    assert page.locator(EXCEPTION).count() == 0
    page.screenshot(path=str(shots / "serving.png"))

    go(page, "Technique comparison")
    if page.locator(CHART).count() or page.locator("textarea").count() > 1:
        charts_ok(page)
    assert page.locator(EXCEPTION).count() == 0
    page.screenshot(path=str(shots / "techniques.png"))

    go(page, "Capacity planner")
    assert page.locator(EXCEPTION).count() == 0
    page.screenshot(path=str(shots / "planner.png"))
    assert all(p.stat().st_size > 10_000 for p in shots.iterdir())


def select_option(page, label: str, option: str) -> None:
    """Streamlit's selectbox is a combobox: open it and pick the option."""
    page.get_by_label(label, exact=True).click()
    rerun_after(page, lambda: page.get_by_role("option", name=option, exact=True).first.click())


def fresh(page, server: str, path: str) -> None:
    """A new browser session on `path` (new websocket: the sidebar starts from its defaults)."""
    page.goto(f"{server}/{path}")
    page.wait_for_selector("h1")
    idle(page)


def test_planner_task_without_any_file(page, server, tmp_path):
    """The capacity planner's question, answered in the UI alone: Qwen2-VL-7B photo chat at 20 req/s, p90 TTFT
    under 1 s, H100 vs L40S, and what per month. The per-GPU table must show what lvlmsim.plan returns."""
    from lvlmsim.planner import SearchSettings, plan
    from lvlmsim.specs.request_overrides import with_request
    from lvlmsim.specs.scenario import load_scenario

    fresh(page, server, "")
    select_option(page, "Model", "qwen2-vl-7b")
    select_option(page, "Preset", "chat photo")
    go(page, "Capacity planner")
    rerun_after(page, lambda: page.get_by_role("button", name="Use the sidebar's request").click())
    box = page.get_by_label("Scenario", exact=True)
    assert box.input_value().startswith("sidebar request: qwen2-vl-7b on h100-sxm tp1, 1 x 1024x768")
    page.get_by_label("Target rate (req/s)", exact=True).fill("20")
    page.get_by_label("TTFT p90 SLO (s)", exact=True).fill("1")
    page.get_by_role("button", name="Plan", exact=True).click()
    page.wait_for_selector('[data-testid="stTable"]', state="visible", timeout=300_000)
    idle(page)
    assert page.locator(EXCEPTION).count() == 0

    banner = page.locator('[data-testid="stMarkdownContainer"]').filter(has_text="Planned").first.inner_text()
    assert "qwen2-vl-7b" in banner and "h100-sxm" in banner and "l40s" in banner and "20 req/s" in banner
    rows = page.locator('[data-testid="stTable"] tbody tr')
    shown = {}
    for i in range(rows.count()):
        cells = [c.inner_text().strip() for c in rows.nth(i).locator("th, td").all()]
        shown[cells[0]] = cells
    header = [c.inner_text().strip() for c in page.locator('[data-testid="stTable"] thead th').all()]
    assert set(shown) == {"h100-sxm", "l40s"}

    sc = with_request(load_scenario("llava-chat-h100"), model="qwen2-vl-7b", hardware="h100-sxm", tp=1,
                      image_size=[(1024, 768)], images=1, prompt_tokens=80, output_tokens=160, video_s=0.0,
                      techniques=[], scenario_id="sidebar-request")
    res = plan(sc, target_rate=20.0, slos={"ttft_p90": 1.0, "tpot_p90": 0.05}, hardware=["h100-sxm", "l40s"],
               tp=[1, 2, 4, 8], layouts=["agg"], settings=SearchSettings(probe_duration_s=30.0, tolerance=0.05),
               executor="serial")
    from lvlmsim.fmt import fmt_usd

    for hw, row in res.by_hardware().items():
        cells = dict(zip(header[-len(shown[hw]):], shown[hw], strict=True))
        if row["feasible"]:
            assert cells["GPUs"] == str(row["gpus"])
            assert cells["$/hour"] == fmt_usd(row["cost_per_hour_usd"])
            assert cells["$/month"] == fmt_usd(row["cost_per_month_usd"])
        else:
            assert cells["verdict"] == f"not possible because {row['reason']}"
    page.screenshot(path=str(tmp_path / "planner-table.png"), full_page=True)


ROOF_SENTENCE = re.compile(r"(?P<op>[\w.]+) \(intensity (?P<i>[\d.e+-]+) FLOP/byte vs its effective ridge "
                           r"(?P<r>[\d.e+-]+) FLOP/byte\) is (?P<bound>\w+)-bound(?P<rest>[^.]*)")


@pytest.mark.parametrize("model, hardware", [("llava-1.5-7b", "h100-sxm"), ("qwen2-vl-7b", "l4"),
                                             ("internvl2.5-8b", "a100-sxm-80gb")])
def test_roofline_sentences_agree_with_the_plotted_points(page, server, model, hardware):
    """Every sentence naming an op gives the bound the API gives it and puts it on the side of its effective
    ridge that bound implies; the points drawn are those ops (the AppTest suite checks the chart's data)."""
    import lvlmsim

    fresh(page, server, "roofline")
    select_option(page, "Model", model)
    select_option(page, "Hardware", hardware)
    charts_ok(page)
    want = fmt_time_app(lvlmsim.estimate(model, hardware).ttft_s)
    assert metric_becomes(page, "TTFT", want) == want
    text = "\n".join(li.inner_text() for li in page.locator('[data-testid="stMarkdownContainer"] li').all())
    found = list(ROOF_SENTENCE.finditer(text))
    assert len(found) >= 3, text
    ops = lvlmsim.estimate(model, hardware).ops_frame()
    for m in found:
        rows = ops[ops["op"] == m["op"]]
        assert len(rows) and m["bound"] in set(rows["bound"]), (m["op"], m["bound"])
        i, r = float(m["i"]), float(m["r"])
        if m["bound"] == "memory":
            assert i < r and "left of its effective ridge" in m["rest"]
        elif m["bound"] == "compute":
            assert i >= r * 0.999 and "right of its effective ridge" in m["rest"]
    est = lvlmsim.estimate(model, hardware)
    for stage, s in ((k, v) for k, v in est.stages.items() if k in set(ops["stage"])):
        assert f"{stage} ({want_time(s.time_s)}; the API labels the stage {s.bound}-bound)" in text


def want_time(s: float) -> str:
    return fmt_time_app(s)


def fmt_time_app(s: float) -> str:
    sys.path.insert(0, str(REPO / "app"))
    from explorer.fmt import fmt_time

    return fmt_time(s)


def test_share_url_with_hostile_values(page, server):
    """A shared URL with values no widget takes: each is named in a warning above the page and dropped, the rest of
    the URL applies, and the numbers are the API's for what was applied. Before wave 8, ?tp=1000&prompt_tokens=2000000
    ran tp 1 with 0 prompt tokens (Streamlit put each widget's minimum in place of a value past its maximum) and the
    page said only 'a request needs at least one prompt or visual token'; ?video_s=nan reached the estimate."""
    import lvlmsim

    fresh(page, server, "?model=nope&tp=1000&batch=-3&prompt_tokens=2000000&video_s=nan&width=1.5&output_tokens=77")
    assert page.locator(EXCEPTION).count() == 0
    warnings = " ".join(w.inner_text() for w in page.locator('[data-testid="stAlert"]').all())
    for named in ("model: unknown 'nope'", "tp: expected a whole number in 1..64, got '1000'",
                  "batch: expected a whole number in 1..4096, got '-3'", "prompt_tokens: expected a whole number in "
                  "0..1000000", "video_s: expected a number of seconds in 0..3600, got 'nan'",
                  "width: expected a whole number in 1..16384, got '1.5'"):
        assert named in warnings, (named, warnings)
    assert page.get_by_label("TP", exact=True).input_value() == "1"
    assert page.get_by_label("Output tokens", exact=True).input_value() == "77"
    want = fmt_time_app(lvlmsim.estimate(output_tokens=77).ttft_s)
    assert metric_becomes(page, "TTFT", want) == want


@pytest.mark.parametrize("path", ["overview?model=qwen2-vl-7b&tp=2", "roofline?model=qwen2-vl-7b&tp=2"])
def test_direct_link_to_a_page_shows_no_page_not_found(page, server, path):
    """A typed or shared link to a page opens it with no "Page not found" dialog (wave 9 saw one on /overview: the
    default page is served at the root, so Streamlit matched /overview to no page). /overview lands on the root with
    the link's setup; the dialog is looked for while the page loads, not only at the end."""
    page.goto(f"{server}/{path}")
    seen = []
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        if "Page not found" in page.evaluate("document.body.innerText"):
            seen.append(round(6 - (deadline - time.monotonic()), 2))
        page.wait_for_timeout(50)
    idle(page)
    assert not seen, f"'Page not found' shown at {seen} s"
    heading = {"overview": "lvlmsim explorer", "roofline": "Roofline"}[path.split("?")[0]]
    assert page.locator("h1").first.inner_text().strip() == heading
    assert page.get_by_label("TP", exact=True).input_value() == "2"
    assert "model=qwen2-vl-7b" in page.url


def test_benchmark_page_renders_and_reacts(page, server):
    """The Benchmark page in a real browser: its two charts paint, and a new number of prompts gives the summary
    block of `lvlmsim.bench.run_bench` for it (vLLM counts the text prompts: 40 x 512 input tokens)."""
    from lvlmsim.bench.run import BenchArgs, run_bench

    fresh(page, server, "bench?model=qwen2.5-vl-7b")
    charts_ok(page, 2)
    set_number(page, "Number of prompts", 40)
    want = run_bench(BenchArgs(model="qwen2.5-vl-7b", hardware="h100-sxm", dataset_name="random-image",
                               image_resolution="720p", num_prompts=40, max_concurrency=16, random_input_len=512,
                               random_output_len=128, random_range_ratio=0.0, ignore_eos=True)).result
    block = page.locator('[data-testid="stCode"]').first.inner_text()
    assert re.search(r"Successful requests:\s+40\b", block), block
    assert want["total_input_tokens"] == 40 * 512
    assert re.search(rf"Total input tokens:\s+{want['total_input_tokens']}\b", block), block
    assert re.search(rf"Mean TTFT \(ms\):\s+{want['mean_ttft_ms']:.2f}\b", block), block
    charts_ok(page, 2)
