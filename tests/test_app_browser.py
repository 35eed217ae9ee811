"""End to end in a real browser: `lvlmsim app` serves the explorer, headless Chromium visits every page, changes a
widget, and each page must render its charts with no exception block. Screenshots go to pytest's tmp dir."""

from __future__ import annotations

import importlib.util
import os
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
