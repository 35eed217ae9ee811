"""Benchmark: what `vllm bench serve` or `python -m sglang.bench_serving` would print for this run, on hardware you do
not have (`lvlmsim bench`, issue 13). The model, hardware, TP, EP and efficiency profile come from the sidebar; the
client's flags are set here. One call of lvlmsim.bench.run_bench; the summary block, the commands and the comparison
with a real result file are the CLI's own functions."""

from __future__ import annotations

import streamlit as st
from explorer import charts
from explorer.bench_data import compare_frame, compare_with_upload, hf_repo, reproduce_lines, run
from explorer.state import USER_ERRORS, current_setup, keep, sticky
from explorer.ui import chart

from lvlmsim.bench.clients import RESOLUTIONS
from lvlmsim.bench.datasets import dataset_ids
from lvlmsim.bench.run import SYNTHETIC, BenchArgs, parse_max_concurrency, parse_request_rate
from lvlmsim.specs.workload import MAX_REQUESTS

DATASETS = [*SYNTHETIC, *dataset_ids()]
CUSTOM = "custom HxW"
DEFAULTS = {"bench.runtime": "the client's", "bench.client": "vllm", "bench.dataset": "random-image",
            "bench.num_prompts": 200, "bench.rate": "inf", "bench.cap": "16", "bench.input_len": 512,
            "bench.output_len": 128, "bench.named_output_len": 0, "bench.ratio": 0.0, "bench.images": 1,
            "bench.resolution": "720p", "bench.custom_resolution": "720x1280", "bench.ignore_eos": True}


def widgets() -> tuple[dict, list[str]]:
    """The client's flags as BenchArgs fields, and one message per flag typed in a form no client takes."""
    for key, default in DEFAULTS.items():
        sticky(key, default)
    c = st.columns(4)
    client = c[0].selectbox("Client", ["vllm", "sglang"], key="bench.client",
                            help="Whose flag meanings: vllm = `vllm bench serve`, sglang = `python -m "
                                 "sglang.bench_serving` (their --random-range-ratio and defaults differ).")
    runtime = c[1].selectbox("Server runtime", ["the client's", "vllm", "sglang", "trtllm"], key="bench.runtime",
                             help="The server measured (`--runtime`); by default the client's own.")
    dataset = c[2].selectbox("Dataset", DATASETS, key="bench.dataset",
                             help="`--dataset-name`: random (text), random-image (vLLM random-mm, SGLang image), or "
                                  "a real dataset as a distribution of lengths and images with sources.")
    n = c[3].number_input("Number of prompts", 1, MAX_REQUESTS, step=50, key="bench.num_prompts",
                          help="`--num-prompts`: requests sent in the run.")
    c = st.columns(4)
    rate_text = c[0].text_input("Request rate (req/s)", key="bench.rate",
                                help="`--request-rate`: requests per second (Poisson), or inf: all at t = 0, paced "
                                     "by the concurrency cap.")
    cap_text = c[1].text_input("Max concurrency", key="bench.cap",
                               help="`--max-concurrency`: requests in flight at most, or inf for no cap.")
    synthetic = dataset in SYNTHETIC
    in_len = c[2].number_input("Input length (tokens)", 1, 1_000_000, step=64, key="bench.input_len",
                               disabled=not synthetic, help="`--random-input-len`: text tokens per prompt (random "
                                                            "datasets; a named dataset brings its own).")
    if synthetic:
        out_len = c[3].number_input("Output length (tokens)", 1, 1_000_000, step=64, key="bench.output_len",
                                    help="`--random-output-len`: tokens generated per request.")
    else:  # a named dataset brings its own output lengths unless a fixed one is given
        out_len = c[3].number_input("Output length (0 = dataset's)", 0, 1_000_000, step=64,
                                    key="bench.named_output_len",
                                    help="A fixed output length (vllm `--sharegpt-output-len` / `--hf-output-len`, "
                                         "sglang `--sharegpt-output-len` / `--random-output-len` for MMMU); 0 = the "
                                         "dataset's own lengths.")
    c = st.columns(4)
    ratio = c[0].number_input("Range ratio", 0.0, 1.0, step=0.1, key="bench.ratio", disabled=not synthetic,
                              help="`--random-range-ratio`: vllm draws lengths on [L(1−r), L(1+r)] (r < 1); "
                                   "sglang on [L·r, L] (r = 1: exactly L).")
    image = dataset == "random-image"
    count = c[1].number_input("Images per request", 0, 64, step=1, key="bench.images", disabled=not image,
                              help="`--image-count` (vllm: --random-mm-base-items-per-request).")
    res = c[2].selectbox("Image resolution", [*RESOLUTIONS, CUSTOM], key="bench.resolution", disabled=not image,
                         help="`--image-resolution`: a preset, or a custom size HEIGHTxWIDTH (height first, as both "
                              "clients read it).")
    custom = c[3].text_input("Custom size (HxW)", key="bench.custom_resolution", disabled=not image or res != CUSTOM,
                             help="HEIGHTxWIDTH in pixels, e.g. 720x1280.")
    eos = st.checkbox("Ignore EOS (answers run to their full length)", key="bench.ignore_eos",
                      help="`--ignore-eos` (sglang: without `--disable-ignore-eos`). lvlmsim always generates every "
                           "requested token, so compare with runs made this way.")
    keep(*DEFAULTS)
    problems = []
    try:
        rate = parse_request_rate(rate_text)
    except USER_ERRORS as exc:
        problems.append(str(exc))
        rate = None
    try:
        cap = parse_max_concurrency(cap_text)
    except USER_ERRORS as exc:
        problems.append(str(exc))
        cap = None
    fields = {"client": client, "runtime": None if runtime == "the client's" else runtime, "dataset_name": dataset,
              "num_prompts": int(n), "request_rate": rate, "max_concurrency": cap,
              "random_output_len": int(out_len) or None, "ignore_eos": bool(eos)}
    if synthetic:
        fields.update(random_input_len=int(in_len), random_range_ratio=float(ratio))
    if image:
        fields.update(image_count=int(count), image_resolution=custom.strip() if res == CUSTOM else res)
    return fields, problems


st.title("Benchmark")
setup = current_setup()
st.caption(f"What `vllm bench serve` or `python -m sglang.bench_serving` would print for **{setup.model}** on "
           f"**{setup.hardware}** (tp {setup.tp}{f', ep {setup.ep}' if setup.ep != 1 else ''}, from the sidebar), "
           "simulated by `lvlmsim bench`. The requests are the benchmark dataset's below: the sidebar's images, "
           "lengths, batch and techniques do not apply here.")
fields, problems = widgets()
for p in problems:
    st.error(p)
if problems:
    st.stop()
args = BenchArgs(model=setup.model, hardware=setup.hardware, tp=setup.tp, ep=setup.ep if setup.ep != 1 else None,
                 **fields)
try:
    out = run(args, None if setup.profile == "auto" else setup.profile, hf_repo(setup.model))
except USER_ERRORS as exc:
    st.error(str(exc))
    st.stop()

r = out["result"]
c = st.columns(4)
c[0].metric("Request throughput", f"{r['request_throughput']:.2f} req/s")
c[1].metric("Output throughput", f"{r['output_throughput']:.0f} tok/s")
c[2].metric("Mean TTFT", f"{r['mean_ttft_ms']:.2f} ms")
c[3].metric("Mean TPOT", f"{r['mean_tpot_ms']:.2f} ms")
left, right = st.columns([5, 6])
with left:
    st.subheader("What the client prints")
    st.code(out["summary"], language=None)
    for note in out["notes"]:
        st.caption(f"note: {note}")
with right:
    st.subheader("Per request")
    long = charts.bench_long(out["requests"])
    chart(charts.bench_requests_chart(long))
    chart(charts.bench_cdf_chart(long))
    st.caption(f"The {len(out['requests'])} completed requests: TTFT and end-to-end latency (E2E, the client's "
               "E2EL) of each against when it was sent, and their distribution (share of requests at or below).")

st.subheader("Run it against a real server")
(client_cmd, client_why), (server_cmd, server_why) = out["client"], out["server"]
# one under the other, at the page's width: side by side, the client's JSON-valued flags ran past the box's edge
for title, cmd, why in (("1. The server (the simulated one's tp, ep and serving settings)", server_cmd, server_why),
                        ("2. The benchmark client (add `--host`/`--port` or `--base-url` of your server)", client_cmd,
                         client_why)):
    st.caption(title)
    if cmd:
        st.code(cmd, language="bash")
    else:
        st.info(why)
st.caption("3. Upload the result file it writes (vLLM's JSON or SGLang's JSONL) to see both side by side; the same as "
           "`lvlmsim bench ... --compare result.json`.")
upload = st.file_uploader("Real result (vLLM JSON or SGLang JSONL)", type=["json", "jsonl"], key="bench.upload")
if upload is not None:
    rows, notes, err = compare_with_upload(upload, args, r)  # figures with the CLI's two decimals (compare_block)
    if err:
        st.error(err)
    else:
        for note in notes:
            st.caption(f"note: {note}")
        table = compare_frame(rows)
        st.dataframe(table, hide_index=True, key="bench-compare", height=35 * (len(table) + 1) + 3,  # every row shown
                     column_config={"lvlmsim": st.column_config.NumberColumn(format="%.2f"),
                                    "real": st.column_config.NumberColumn(format="%.2f"),
                                    "difference (%)": st.column_config.NumberColumn(format="%+.1f%%")})
with st.expander("Reproduce with the CLI or in Python"):
    cli, python = reproduce_lines(args, setup.profile)
    st.code(cli, language="bash")
    st.code(python, language="python")
