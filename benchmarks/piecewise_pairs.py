"""Published piecewise-vs-full CUDA-graph pairs (calibration/host/piecewise_pairs.yaml) priced by lvlmsim, and that
file's pre-declared rule applied as written (issue 13, waves 7-8; docs/cudagraph-modes.md).

Each pair is one published server run twice, once with cudagraph_mode PIECEWISE and once FULL (or FULL_AND_PIECEWISE,
whose pure-decode steps are full graphs). lvlmsim replays the run through `lvlmsim bench` with the vllm-v1-piecewise
host profile and with vllm-v1 (the same host step; only the graph mode differs), so its gap is the piecewise launch
queue's alone. For every qualifying pair the per-layer host figure h (one graph replay + one eager attention call) is
the value at which lvlmsim's gap equals the published one: the attention call is varied (graph replay and LM-head op
at the system's figures, lvlmsim.cost.runtime.piecewise_dispatch) and solved by bisection; the GPU time of the step is
lvlmsim's own price throughout. Then the rule's host-exposure checks, independence groups and ship test. The verdict
is printed, never written anywhere: shipping a figure is a separate, sourced edit of lvlmsim.cost.runtime.

    python benchmarks/piecewise_pairs.py [--json] [--stand-ins]

--stand-ins adds a diagnostic the rule never counts: a non-qualifying pair whose GPU is not named, priced on each
GPU of its `stand_in` list, to show how far the unnamed GPU leaves its per-layer figure open.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from statistics import median
from unittest import mock

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import lvlmsim.cost.runtime as runtime_mod  # noqa: E402
from lvlmsim.bench.run import BenchArgs, run_bench  # noqa: E402
from lvlmsim.cost.host import load_host_profile  # noqa: E402
from lvlmsim.importers.hf import import_hf_config  # noqa: E402
from lvlmsim.specs.registry import load_hardware, load_model  # noqa: E402

DATA = REPO / "calibration" / "host" / "piecewise_pairs.yaml"
PIECEWISE, FULL = "vllm-v1-piecewise", "vllm-v1"
MIN_GAP_MS, MIN_GAP_SHARE = 0.1, 0.05  # check (a): the published gap is at least max(0.1 ms, 5% of the full figure)
MIN_GROUPS = 3  # independent qualifying pairs needed to ship
AGREE_SHARE = 0.30  # every pair's h within +-30% of the median
ATTN_MAX_S = 5e-3  # bisection bracket of the attention call, seconds
BISECT_STEPS = 40

# config.json fields of the pairs' models (a pair's `config_ref`)
CONFIGS = {
    # Qwen/Qwen3-0.6B (as in calibration/host/tiny_model_runs.yaml)
    "QWEN3_06B": {"_name_or_path": "Qwen/Qwen3-0.6B", "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3",
                  "hidden_size": 1024, "intermediate_size": 3072, "num_hidden_layers": 28, "num_attention_heads": 16,
                  "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936, "max_position_embeddings": 40960,
                  "tie_word_embeddings": True, "torch_dtype": "bfloat16"},
    # Qwen/Qwen2.5-1.5B config.json (model card: 1.54B parameters, 28 layers, 12 Q / 2 KV heads, tied embeddings)
    "QWEN25_15B": {"_name_or_path": "Qwen/Qwen2.5-1.5B", "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
                   "hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28, "num_attention_heads": 12,
                   "num_key_value_heads": 2, "vocab_size": 151936, "max_position_embeddings": 32768,
                   "tie_word_embeddings": True, "torch_dtype": "bfloat16"},
}


@contextlib.contextmanager
def attention_call(attention_s: float | None) -> Iterator[None]:
    """Within: piecewise steps use `attention_s` as the eager attention call (None: the shipped figure)."""
    if attention_s is None:
        yield
        return
    shipped = runtime_mod.piecewise_dispatch

    def patched(hw):
        return dataclasses.replace(shipped(hw), attention_call_s=attention_s)

    with mock.patch.object(runtime_mod, "piecewise_dispatch", patched):
        yield


def priced_ms(pair: dict, model_path: str, profile: str, attention_s: float | None = None) -> float:
    """The pair's statistic as lvlmsim prices the run under host profile `profile`."""
    args = BenchArgs(model=model_path, hardware=pair["hardware"], client="vllm", runtime="vllm",
                     serving={"host_costs": profile}, **pair["args"])
    with attention_call(attention_s):
        return float(run_bench(args).result[pair["statistic"]])


def solve_attention_s(pair: dict, model_path: str, full_ms: float, gap_ms: float) -> float | None:
    """The attention call (seconds) at which lvlmsim's piecewise - full gap equals `gap_ms`; None if out of bracket."""
    lo, hi = 0.0, ATTN_MAX_S
    if priced_ms(pair, model_path, PIECEWISE, hi) - full_ms < gap_ms:
        return None
    for _ in range(BISECT_STEPS):
        mid = 0.5 * (lo + hi)
        if priced_ms(pair, model_path, PIECEWISE, mid) - full_ms < gap_ms:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def gap_clears_noise(gap_ms: float, full_ms: float) -> bool:
    """Check (a): the published gap is at least max(0.1 ms, 5% of the published full-graph figure)."""
    return gap_ms >= max(MIN_GAP_MS, MIN_GAP_SHARE * full_ms)


def price_pair(pair: dict, tmp: Path) -> dict:
    """Shipped prices, the solved per-layer figure and the rule's two host-exposure checks of one qualifying pair."""
    path = tmp / f"{pair['id']}.yaml"
    path.write_text(yaml.safe_dump(import_hf_config(CONFIGS[pair["config_ref"]], model_id=pair["id"]), sort_keys=False))
    layers = load_model(str(path)).llm.num_layers
    pw = runtime_mod.piecewise_dispatch(load_hardware(pair["hardware"]))
    pub = pair["published"]
    gap_ms = pub["piecewise"] - pub["full"]
    full_ms = priced_ms(pair, str(path), FULL)
    out = {"layers": layers, "published_gap_ms": gap_ms, "full_ms": full_ms,
           "piecewise_ms": priced_ms(pair, str(path), PIECEWISE), "graph_replay_us": pw.graph_replay_s * 1e6,
           "shipped_attention_us": pw.attention_call_s * 1e6, "exposed_per_layer_us": gap_ms / layers * 1e3,
           "gpu_step_ms": full_ms - load_host_profile(FULL).step_host_s * 1e3}
    out["check_a"] = gap_clears_noise(gap_ms, pub["full"])
    attn_s = solve_attention_s(pair, str(path), full_ms, gap_ms) if out["check_a"] else None
    out["h_us"] = None if attn_s is None else (pw.graph_replay_s + attn_s) * 1e6
    out["check_b"] = out["h_us"] is not None and layers * out["h_us"] * 1e-3 > out["gpu_step_ms"]
    return out


def verdict(priced: dict[str, dict], pairs: list[dict]) -> dict:
    """The rule's independence groups (author, GPU, version) and ship test over the pairs that passed both checks."""
    groups: dict[tuple, list[float]] = {}
    for pair in pairs:
        got = priced.get(pair["id"])
        if got and got["check_a"] and got["check_b"]:
            groups.setdefault((pair["author"], pair["gpu"], pair["version"]), []).append(got["h_us"])
    hs = [median(v) for v in groups.values()]
    mid = median(hs) if hs else None
    agree = bool(hs) and all(abs(h - mid) <= AGREE_SHARE * mid for h in hs)
    ships = len(hs) >= MIN_GROUPS and agree
    return {"independent_pairs": len(hs), "h_us": hs, "median_h_us": mid, "agree": agree, "ships": ships}


def stand_ins(pairs: list[dict], tmp: Path) -> list[dict]:
    """Diagnostic only (never counted): each `stand_in` of a non-qualifying pair priced on each listed GPU."""
    rows = []
    for pair in pairs:
        alt = pair.get("stand_in")
        for hw in alt["hardware"] if alt else ():
            trial = {"id": f"{pair['id']}-{hw}", "hardware": hw, "statistic": pair["statistic"],
                     "config_ref": alt["config_ref"], "args": alt["args"], "published": alt["published"]}
            rows.append({"pair": pair["id"], "hardware": hw, **price_pair(trial, tmp)})
    return rows


def _print_stand_ins(rows: list[dict]) -> None:
    print("\nstand-ins (diagnostic, not counted by the rule: the pair's GPU is not named):")
    for r in rows:
        h = "n/a" if r["h_us"] is None else f"{r['h_us']:.1f} us"
        print(f"    {r['pair']} on {r['hardware']:9s}: lvlmsim full {r['full_ms']:.2f} ms, GPU step "
              f"{r['gpu_step_ms']:.2f} ms, h = {h}, checks (a) {r['check_a']} (b) {r['check_b']}")


def _print_pair(pair: dict, got: dict | None) -> None:
    print(f"{pair['id']}  [{pair['source']}, {pair['author']}, {pair['date']}]")
    if got is None:
        print(f"    not qualifying: {pair['why']}")
        return
    pub, pw_ms, full_ms = pair["published"], got["piecewise_ms"], got["full_ms"]
    print(f"    {pair['statistic']:15s} piecewise: published {pub['piecewise']:6.2f}  lvlmsim {pw_ms:6.2f}"
          f"   full: published {pub['full']:6.2f}  lvlmsim {full_ms:6.2f} ms")
    print(f"    gap: published {got['published_gap_ms']:+.2f} ms, lvlmsim {pw_ms - full_ms:+.2f} ms"
          f" (shipped: replay {got['graph_replay_us']:.1f} + attention {got['shipped_attention_us']:.1f} us a layer)")
    h = "n/a" if got["h_us"] is None else f"{got['h_us']:.1f} us"
    print(f"    per-layer host figure h = {h} over {got['layers']} layers (exposed part gap / layers = "
          f"{got['exposed_per_layer_us']:.1f} us); lvlmsim GPU step {got['gpu_step_ms']:.2f} ms")
    print(f"    check (a) gap >= max({MIN_GAP_MS} ms, {MIN_GAP_SHARE:.0%} of full): {got['check_a']};"
          f"  check (b) layers x h > GPU step: {got['check_b']}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print the figures as JSON instead of a table")
    ap.add_argument("--stand-ins", action="store_true", help="add the diagnostic stand-in GPUs (never counted)")
    opts = ap.parse_args(argv)
    pairs = yaml.safe_load(DATA.read_text())["pairs"]
    priced: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for pair in pairs:
            if pair["qualifies"]:
                priced[pair["id"]] = price_pair(pair, Path(tmp))
        diag = stand_ins(pairs, Path(tmp)) if opts.stand_ins else []
    result = verdict(priced, pairs)
    if opts.json:
        print(json.dumps({"pairs": priced, "verdict": result, "stand_ins": diag}, indent=1))
        return 0
    for pair in pairs:
        _print_pair(pair, priced.get(pair["id"]))
    mid = "n/a" if result["median_h_us"] is None else f"{result['median_h_us']:.1f} us"
    print(f"\nrule: {result['independent_pairs']} independent qualifying pair(s) passing both checks "
          f"(needs {MIN_GROUPS}), median h {mid}, all within +-{AGREE_SHARE:.0%}: {result['agree']}")
    print("verdict: " + ("SHIPS (a separate, sourced edit of lvlmsim.cost.runtime)" if result["ships"]
                         else "nothing ships; the table and this script stay as findings"))
    if diag:
        _print_stand_ins(diag)
    return 0


if __name__ == "__main__":
    sys.exit(main())
