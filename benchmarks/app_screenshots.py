"""Screenshots of every explorer page (docs/images/app-*.png) and timings, measured in a real browser.

    python benchmarks/app_screenshots.py [--out docs/images] [--redraws 10]

* cold start: from launching `streamlit run app/Home.py` (a fresh Python process) until the roofline page's chart
  is painted in headless Chromium (the browser opens the page as soon as the server answers its health check);
* redraw: on the roofline page, type a new image width into the sidebar and press Enter; the time until the app's
  rerun has finished (`stApp` back to `notRunning`), the TTFT metric shows the value `lvlmsim.estimate` gives for
  the new size, and two animation frames have passed (the chart repainted). The median over `--redraws` sizes.
* redraw per page: on every page, type a new prompt length into the sidebar and press Enter; on the pages that show
  the headline (Overview, Roofline, Request breakdown, Technique comparison) until the TTFT metric shows the API's
  value, on Serving and Capacity planner (their last run/plan on screen) until the rerun finished and painted.
* redraw on the Benchmark page: type a new input length into the page's own flags and press Enter; until the
  summary block shows the total input tokens `lvlmsim.bench.run_bench` gives for it (a fresh simulated run of the
  page's default 200 prompts each time, never a cache hit).
* the planner's task: Qwen2-VL-7B photo chat at 20 req/s, H100 vs L40S, planned from the sidebar's request
  (docs/images/app-planner-table.png), and an A/B roofline of H100 SXM vs L40S (docs/images/app-roofline-ab.png).

Needs /usr/bin/chromium and the `playwright` Python package (its bundled driver; no `playwright install`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "app"))
CHROMIUM = "/usr/bin/chromium"
CHROME_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PAGES = [("Overview", "app-overview.png"), ("Roofline", "app-roofline.png"),
         ("Request breakdown", "app-breakdown.png"), ("Serving simulation", "app-serving.png"),
         ("Benchmark", "app-bench.png"),
         ("Technique comparison", "app-techniques.png"), ("Capacity planner", "app-planner.png")]
COMPARE = "fastv:layer=2,keep=0.5\nkv_quant:bits=8\nweight_quant:scheme=w4a16"  # techniques page: 8 combinations
HEADINGS = {"Overview": "lvlmsim explorer"}  # a page's h1, where it differs from its link
WIDTH = 1500
CHART = '[data-testid="stVegaLiteChart"]'
HEADLINE_PAGES = ("Overview", "Roofline", "Request breakdown", "Technique comparison")  # show the TTFT metric
MODEL = "qwen2-vl-7b"  # dynamic resolution: the image size changes the visual tokens, so every redraw has news


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int) -> subprocess.Popen:
    """`lvlmsim app` itself, so the timing is what a user gets (file watcher off: nothing edits the app here)."""
    cmd = [sys.executable, "-m", "lvlmsim", "app", "--port", str(port), "--address", "127.0.0.1", "--",
           "--server.fileWatcherType", "none"]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True)


def wait_healthy(port: int, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError("streamlit exited before serving")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError("streamlit did not answer its health check")


# Counts finished reruns: a MutationObserver on the app root's script state (running -> notRunning).
WATCH_RUNS = """() => {
  if (window.__runs !== undefined) return;
  window.__runs = 0;
  const app = document.querySelector('[data-testid="stApp"]');
  new MutationObserver(() => {
    if (app.getAttribute('data-test-script-state') === 'notRunning') window.__runs += 1;
  }).observe(app, {attributes: true, attributeFilter: ['data-test-script-state']});
}"""
PAINT = "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"


def idle(page, timeout_ms: int = 30_000) -> None:
    """No rerun in flight, and the browser painted the last one."""
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=timeout_ms)
    page.evaluate(WATCH_RUNS)
    page.evaluate(PAINT)


def rerun_after(page, action, timeout_ms: int = 30_000) -> None:
    """Do `action` (a widget change) and wait for the rerun it causes to finish and paint."""
    page.evaluate(WATCH_RUNS)
    before = page.evaluate("() => window.__runs")
    action()
    page.wait_for_function("(n) => window.__runs > n", arg=before, timeout=timeout_ms)
    idle(page, timeout_ms)


def set_number(page, label: str, value: int | float) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(str(value))
    rerun_after(page, lambda: box.press("Enter"))


def select_option(page, label: str, option: str) -> None:
    """Streamlit's selectbox is a combobox: open it and pick the option."""
    page.get_by_label(label, exact=True).click()
    rerun_after(page, lambda: page.get_by_role("option", name=option, exact=True).first.click())


def go(page, title: str) -> None:
    """Click the page's link in the top navigation (same session, so the sidebar setup carries over)."""
    page.get_by_role("link", name=title, exact=True).first.click()
    page.wait_for_selector(f'h1:has-text("{HEADINGS.get(title, title)}")')
    idle(page)
    if page.locator(CHART).count():
        page.wait_for_selector(CHART, state="visible")


def redraw_ms(page, title: str, n: int, model: str) -> list[float]:
    """Median-ready redraw times (ms) of one page after a sidebar prompt-length change (see the module docstring)."""
    from explorer.fmt import fmt_time

    import lvlmsim

    go(page, title)
    headline = title in HEADLINE_PAGES
    hw = page.get_by_test_id("stSidebarUserContent").get_by_label("Hardware", exact=True).input_value()
    out = []
    for i in range(n):
        prompt = 100 + 16 * i
        box = page.get_by_label("Prompt tokens", exact=True)
        box.fill(str(prompt))
        page.evaluate(WATCH_RUNS)
        before = page.evaluate("() => window.__runs")
        t1 = time.perf_counter()
        box.press("Enter")
        if headline:
            want = fmt_time(lvlmsim.estimate(model, hw, image_size=(1024, 768), prompt_tokens=prompt,
                                             output_tokens=160).ttft_s)
            page.wait_for_function(
                """([want]) => {
                     const app = document.querySelector('[data-testid="stApp"]');
                     if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
                     const v = [...document.querySelectorAll('[data-testid="stMetric"]')].find(
                       m => m.querySelector('[data-testid="stMetricLabel"]').innerText.trim() === 'TTFT');
                     return v && v.querySelector('[data-testid="stMetricValue"]').innerText.trim() === want;
                   }""", arg=[want], timeout=30_000)
        else:
            page.wait_for_function("(n) => window.__runs > n", arg=before, timeout=30_000)
            page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]')
        page.evaluate(PAINT)
        out.append((time.perf_counter() - t1) * 1e3)
    return out


def bench_redraw_ms(page, n: int) -> list[float]:
    """Redraw times (ms) of the Benchmark page after a new input length on the page: until the summary block shows
    the run's total input tokens as the API computes them (vLLM counts the text prompts: 200 x the length)."""
    from lvlmsim.bench.run import BenchArgs, run_bench

    go(page, "Benchmark")
    model = page.get_by_test_id("stSidebarUserContent").get_by_label("Model", exact=True).input_value()
    hw = page.get_by_test_id("stSidebarUserContent").get_by_label("Hardware", exact=True).input_value()
    out = []
    for i in range(n):
        length = 400 + 16 * i
        want = run_bench(BenchArgs(model=model, hardware=hw, dataset_name="random-image", image_resolution="720p",
                                   num_prompts=200, max_concurrency=16, random_input_len=length, random_output_len=128,
                                   random_range_ratio=0.0, ignore_eos=True)).result["total_input_tokens"]
        box = page.get_by_label("Input length (tokens)", exact=True)
        box.fill(str(length))
        t1 = time.perf_counter()
        box.press("Enter")
        page.wait_for_function(
            r"""([want]) => {
                 const app = document.querySelector('[data-testid="stApp"]');
                 if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
                 return [...document.querySelectorAll('[data-testid="stCode"]')].some(
                   c => /Total input tokens:\s+(\d+)/.exec(c.innerText)?.[1] === want);
               }""", arg=[str(want)], timeout=30_000)
        page.evaluate(PAINT)
        out.append((time.perf_counter() - t1) * 1e3)
    set_number(page, "Input length (tokens)", 512)  # the page's default again, for its screenshot
    return out


def planner_task(page, out: Path) -> None:
    """The capacity planner's question in the UI alone, and a screenshot of the per-GPU answer."""
    go(page, "Capacity planner")
    rerun_after(page, lambda: page.get_by_role("button", name="Use the sidebar's request").click())
    page.get_by_label("Target rate (req/s)", exact=True).fill("20")
    page.get_by_label("TTFT p90 SLO (s)", exact=True).fill("1")
    page.get_by_role("button", name="Plan", exact=True).click()
    page.wait_for_selector('[data-testid="stTable"]', state="visible", timeout=600_000)
    idle(page)
    head = page.get_by_role("heading", name="Per GPU type")
    head.scroll_into_view_if_needed()
    box = head.bounding_box()
    table = page.locator('[data-testid="stTable"]').first.bounding_box()
    page.screenshot(path=str(out / "app-planner-table.png"),
                    clip={"x": table["x"] - 10, "y": box["y"] - 10, "width": table["width"] + 20,
                          "height": table["y"] + table["height"] - box["y"] + 80})


def screenshot_full(page, path: Path, width: int) -> None:
    """Streamlit scrolls inside its main section, not the window: grow the viewport to the content, then shoot."""
    height = page.evaluate("""() => {
        const main = document.querySelector('[data-testid="stMain"]');
        const block = document.querySelector('[data-testid="stMainBlockContainer"]');
        return main ? main.scrollHeight : block.getBoundingClientRect().bottom; }""")
    page.set_viewport_size({"width": width, "height": min(max(int(height) + 40, 900), 6000)})
    page.evaluate(PAINT)
    page.wait_for_timeout(400)  # vega-embed re-fits charts to the new width/height
    page.screenshot(path=str(path))
    page.set_viewport_size({"width": width, "height": 1000})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(REPO / "docs" / "images"))
    ap.add_argument("--redraws", type=int, default=10)
    args = ap.parse_args()
    from explorer.fmt import fmt_time
    from playwright.sync_api import sync_playwright

    import lvlmsim

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    profile = tempfile.mkdtemp(prefix="lvlmsim-chromium-")
    t0 = time.perf_counter()
    proc = start_server(port)
    try:
        with sync_playwright() as pw:
            ctx = pw.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, args=CHROME_ARGS,
                                                        headless=True, viewport={"width": WIDTH, "height": 1000})
            page = ctx.pages[0] if ctx.pages else ctx.new_page()
            wait_healthy(port, proc)
            t_health = time.perf_counter() - t0
            page.goto(f"http://127.0.0.1:{port}/roofline")
            page.wait_for_selector(CHART, state="visible", timeout=60_000)
            idle(page)
            cold = time.perf_counter() - t0

            select_option(page, "Model", MODEL)
            times = []
            for i in range(args.redraws):
                w = 448 + 112 * (i + 1)
                want = fmt_time(lvlmsim.estimate(MODEL, "h100-sxm", image_size=(w, 336)).ttft_s)
                box = page.get_by_label("Image width (px)", exact=True)
                box.fill(str(w))
                t1 = time.perf_counter()
                box.press("Enter")
                page.wait_for_function(
                    """([want]) => {
                         const app = document.querySelector('[data-testid="stApp"]');
                         if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
                         const v = [...document.querySelectorAll('[data-testid="stMetric"]')]
                           .find(m => m.innerText.startsWith('TTFT'));
                         return v && v.querySelector('[data-testid="stMetricValue"]').innerText.trim() === want;
                       }""", arg=[want], timeout=30_000)
                page.evaluate(PAINT)
                times.append(time.perf_counter() - t1)

            # the planner's task (sidebar request: Qwen2-VL-7B photo chat), then a redraw on every page
            select_option(page, "Preset", "chat photo")
            planner_task(page, out)
            per_page = {title: redraw_ms(page, title, max(3, args.redraws // 2), MODEL) for title, _ in PAGES}
            bench_ms = bench_redraw_ms(page, max(3, args.redraws // 2))
            go(page, "Roofline")
            page.get_by_label("Compare with (A/B)", exact=True).click()
            rerun_after(page, lambda: page.get_by_role("option", name="l40s", exact=True).first.click())
            page.wait_for_selector(CHART, state="visible")
            screenshot_full(page, out / "app-roofline-ab.png", WIDTH)
            page.get_by_label("Compare with (A/B)", exact=True).click()
            rerun_after(page, lambda: page.get_by_role("option", name="no second device", exact=True).first.click())

            # screenshots: one setup that shows a bit of everything (a high-resolution photo, two of them)
            set_number(page, "Image width (px)", 1344)
            set_number(page, "Image height (px)", 1008)
            set_number(page, "Images per request", 2)
            if page.get_by_label("Techniques", exact=True).count():  # FastV, the survey's running example
                # mid-screen first: scrolled only to the window's bottom edge (the sidebar's video size and fps
                # rows put it there), the multiselect's list did not open and no option could be picked
                page.get_by_label("Techniques", exact=True).evaluate("e => e.scrollIntoView({block: 'center'})")
                page.get_by_label("Techniques", exact=True).click()
                rerun_after(page, lambda: page.get_by_role("option", name="fastv", exact=True).click())
                page.keyboard.press("Escape")
            for title, name in PAGES:
                go(page, title)
                area = page.get_by_label("Techniques to compare", exact=False)
                if title == "Technique comparison" and area.count():
                    area.fill(COMPARE)
                    rerun_after(page, lambda a=area: a.press("Control+Enter"))
                if title == "Serving simulation" and page.get_by_role("button", name="Run simulation").count():
                    rerun_after(page, lambda: page.get_by_role("button", name="Run simulation").click(), 120_000)
                    page.wait_for_selector(CHART, state="visible", timeout=120_000)
                screenshot_full(page, out / name, WIDTH)
            ctx.close()
    finally:
        stop(proc)
        shutil.rmtree(profile, ignore_errors=True)

    print(f"server healthy after      {t_health:6.2f} s")
    print(f"cold start to first chart {cold:6.2f} s (roofline page, fresh process, headless Chromium)")
    print(f"redraw after image width  median {statistics.median(times) * 1e3:7.1f} ms  "
          f"min {min(times) * 1e3:.1f}  max {max(times) * 1e3:.1f}  (n={len(times)}, {MODEL} on h100-sxm)")
    for title, ms in per_page.items():
        print(f"redraw {title:<22} median {statistics.median(ms):7.1f} ms  min {min(ms):.1f}  max {max(ms):.1f}  "
              f"(n={len(ms)}, prompt length changed in the sidebar)")
    print(f"redraw {'Benchmark (flags)':<22} median {statistics.median(bench_ms):7.1f} ms  min {min(bench_ms):.1f}  "
          f"max {max(bench_ms):.1f}  (n={len(bench_ms)}, input length changed on the page: a new 200-prompt run)")
    print(f"screenshots in {out}")


if __name__ == "__main__":
    main()
