"""Re-price the published tiny-model vLLM runs of calibration/host/tiny_model_runs.yaml with lvlmsim and apply that
file's pre-declared rule (issue 13, wave 7).

Each priced run's model is imported from its config.json fields (lvlmsim.importers.hf), each row replayed through
`lvlmsim bench` with the run's client flags, the sweep's earlier runs (prefix reuse) and the run version's host
profile, once with host costs on (the rule's price) and once off (the GPU part alone). A row's residual is published
- priced (host on) of the statistic the run published: TTFT (mean, else median) and TPOT (mean, else median, else
the median ITL, the same gap at one request in flight). A run's residual is the median over its rows; runs sharing
author, harness and GPU count once; a quantity ships only with >= 3 independent qualifying runs of one sign and a
spread (max - min) within max(50% of their median, 2 ms for TTFT / 0.2 ms for TPOT). TTFT counts every V1 version,
TPOT only synchronous V1 (the vllm-v1-piecewise and vllm-v1 profiles). The verdict is printed, never written
anywhere: shipping a figure is a separate, sourced edit of calibration/host/runtimes.yaml.

    python benchmarks/tiny_model_overheads.py [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from statistics import median

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lvlmsim.bench.run import BenchArgs, run_bench  # noqa: E402
from lvlmsim.importers.hf import import_hf_config  # noqa: E402
from lvlmsim.ops.graph import param_counts  # noqa: E402
from lvlmsim.specs.model import ModelSpec  # noqa: E402

DATA = REPO / "calibration" / "host" / "tiny_model_runs.yaml"
MAX_PARAMS = 2e9  # the rule's "tiny": at most 2B parameters
MIN_RUNS = 3  # independent qualifying runs a quantity needs to ship
SPREAD_SHARE = 0.5  # of the median residual, the spread allowed ...
SPREAD_FLOOR_MS = {"ttft": 2.0, "tpot": 0.2}  # ... or this, whichever is larger
SYNC_PROFILES = ("vllm-v1-piecewise", "vllm-v1")  # the TPOT residual: synchronous V1 only
V1_PROFILES = ("vllm-v1-piecewise", "vllm-v1", "vllm-v1-async")  # the TTFT residual: every V1 version
# the published statistic of each quantity, in the order the rule prefers them
STATISTICS = {"ttft": ("mean_ttft_ms", "median_ttft_ms"),
              "tpot": ("mean_tpot_ms", "median_tpot_ms", "median_itl_ms")}


def load_runs(path: Path = DATA) -> list[dict]:
    return yaml.safe_load(path.read_text())["runs"]


def stand_in(run: dict) -> ModelSpec:
    """The run's model as lvlmsim imports it from its config.json fields."""
    return ModelSpec.model_validate(import_hf_config(run["config"], model_id=run["id"]))


def total_params(run: dict) -> int:
    return sum(param_counts(stand_in(run)).values())


def qualifies(run: dict, quantity: str) -> bool:
    """The rule's qualifying run for `quantity` (ttft or tpot): priced, tiny, and a V1 (TTFT) or synchronous V1
    (TPOT) server."""
    profiles = SYNC_PROFILES if quantity == "tpot" else V1_PROFILES
    return run["status"] == "priced" and run["profile"] in profiles and total_params(run) <= MAX_PARAMS


def bench_args(run: dict, row: dict, model_path: str, host: bool) -> BenchArgs:
    args = dict(row["args"])
    client = args.pop("client")
    return BenchArgs(model=model_path, hardware=run["hardware"], client=client, runtime="vllm",
                     serving={"host_costs": run["profile"] if host else False},
                     prior_runs=tuple(tuple(int(v) for v in r) for r in row.get("prior_runs", [])), **args)


def published_stat(measured: dict, quantity: str) -> str | None:
    """The key of the statistic the row published for `quantity`, by the rule's preference; None if none."""
    return next((k for k in STATISTICS[quantity] if k in measured), None)


def price_row(run: dict, row: dict, model_path: str) -> dict:
    """Published, priced with host costs on and off, and the residual (published - priced on), per quantity."""
    on = run_bench(bench_args(run, row, model_path, host=True)).result
    off = run_bench(bench_args(run, row, model_path, host=False)).result
    out = {}
    for quantity in STATISTICS:
        key = published_stat(row["measured"], quantity)
        if key is not None:
            pub = float(row["measured"][key])
            out[quantity] = {"statistic": key, "published_ms": pub, "priced_ms": on[key], "gpu_only_ms": off[key],
                             "residual_ms": pub - on[key]}
    return out


def price_run(run: dict, folder: Path) -> list[dict]:
    """price_row of each of a priced run's rows (its stand-in written as a model YAML under `folder`)."""
    path = folder / f"{run['id']}.yaml"
    path.write_text(yaml.safe_dump(import_hf_config(run["config"], model_id=run["id"]), sort_keys=False))
    return [price_row(run, row, str(path)) for row in run["rows"]]


def setup_key(run: dict) -> tuple[str, str, str]:
    """What makes two runs one source under the rule: same author, harness and GPU."""
    return (run["author"], run.get("harness", run["setup"]), run["hardware"])


def verdict(residuals: list[tuple[tuple, float]], quantity: str) -> dict:
    """The rule on (setup key, run residual ms) pairs: runs of one setup count once (their median); ship the median
    only with >= MIN_RUNS independent runs, one sign, and a spread within max(SPREAD_SHARE x |median|, the
    quantity's floor)."""
    by_setup: dict[tuple, list[float]] = {}
    for key, value in residuals:
        by_setup.setdefault(key, []).append(value)
    values = sorted(median(v) for v in by_setup.values())
    out = {"independent_runs": len(values), "residuals_ms": values, "ship": False}
    if not values:
        return {**out, "why": "no qualifying run"}
    mid, spread = median(values), values[-1] - values[0]
    allowed = max(SPREAD_SHARE * abs(mid), SPREAD_FLOOR_MS[quantity])
    out.update(median_ms=mid, spread_ms=spread, allowed_spread_ms=allowed)
    if len(values) < MIN_RUNS:
        return {**out, "why": f"{len(values)} independent run(s), the rule needs {MIN_RUNS}"}
    if min(values) < 0 < max(values):
        return {**out, "why": "residuals of both signs"}
    if spread > allowed:
        return {**out, "why": f"spread {spread:.2f} ms above the allowed {allowed:.2f} ms"}
    return {**out, "ship": True, "why": f"{len(values)} independent runs, spread {spread:.2f} ms <= {allowed:.2f} ms"}


def apply_rule(runs: list[dict], priced: dict[str, list[dict]]) -> dict[str, dict]:
    """verdict() per quantity over the qualifying runs' median row residuals."""
    out = {}
    for quantity in STATISTICS:
        pairs = [(setup_key(run), median(r[quantity]["residual_ms"] for r in priced[run["id"]] if quantity in r))
                 for run in runs if qualifies(run, quantity)
                 and any(quantity in r for r in priced[run["id"]])]
        out[quantity] = verdict(pairs, quantity)
    return out


def print_report(runs: list[dict], priced: dict[str, list[dict]], rule: dict[str, dict]) -> None:
    for run in runs:
        print(f"{run['id']}  [{run.get('model')} on {run.get('hardware', 'a GPU not stated')}, {run['profile']}]")
        print(f"    {run['source']}  ({run['author']}, {run['date']})")
        print(f"    vLLM: {' '.join(str(run['version']).split())}")
        if run["id"] not in priced:
            print(f"    not priced: {run.get('why', run['status'])}")
            continue
        print(f"    {total_params(run) / 1e9:.3f}B parameters; qualifies for TTFT {qualifies(run, 'ttft')}, "
              f"TPOT {qualifies(run, 'tpot')}")
        for row, res in zip(run["rows"], priced[run["id"]], strict=True):
            a = row["args"]
            for r in res.values():
                print(f"    {a['random_input_len']:>5}/{a['random_output_len']:<5} {r['statistic']:<15} published "
                      f"{r['published_ms']:7.2f}  lvlmsim {r['priced_ms']:7.2f} (GPU only {r['gpu_only_ms']:6.2f})"
                      f"  residual {r['residual_ms']:+7.2f} ms")
    print("\npre-declared rule (calibration/host/tiny_model_runs.yaml):")
    for quantity, v in rule.items():
        vals = ", ".join(f"{x:+.2f}" for x in v["residuals_ms"]) or "-"
        extra = (f", median {v['median_ms']:+.2f} ms, spread {v['spread_ms']:.2f} ms (allowed "
                 f"{v['allowed_spread_ms']:.2f})" if "median_ms" in v else "")
        state = "SHIP the median" if v["ship"] else "ship nothing"
        print(f"    {quantity}: {v['independent_runs']} independent run(s) [{vals}]{extra}: {state} ({v['why']})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true", help="print the priced rows and the verdict as JSON")
    opts = ap.parse_args(argv)
    runs = load_runs()
    with tempfile.TemporaryDirectory() as tmp:
        priced = {run["id"]: price_run(run, Path(tmp)) for run in runs if run["status"] == "priced"}
    rule = apply_rule(runs, priced)
    if opts.json:
        print(json.dumps({"priced": priced, "rule": rule}, indent=2))
    else:
        print_report(runs, priced, rule)
    return 0


if __name__ == "__main__":
    sys.exit(main())
