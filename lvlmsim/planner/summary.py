"""A planner's answer at a glance: one row per GPU type, and the server command lines of the recommendation.

`by_hardware()` reads plan()'s candidate table (it recomputes nothing but $ from GPUs x price, so a user-edited
$/GPU-hour gives the same row the planner would): the cheapest feasible configuration of each GPU type, its $/h and
$/month, headroom over the target rate, p90 latencies, or why no configuration of that type works.
`deploy_commands()` turns the recommended configuration and the scenario's serving settings into `vllm serve` and
SGLang launch lines (sources: vLLM engine arguments, https://docs.vllm.ai/en/latest/configuration/engine_args.html;
SGLang server arguments, https://docs.sglang.io/docs/advanced_features/server_arguments).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from lvlmsim.errors import SpecError

HOURS_PER_MONTH = 730.0  # 365 * 24 / 12
LOW_HEADROOM_PCT = 10.0  # below this, a burst or a model error eats the margin: the app and CLI warn


def _num(v: Any) -> float | None:
    if v is None or v is pd.NA:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _why_not(rows: pd.DataFrame) -> str:
    """The most telling reason a GPU type has no feasible configuration: searched failures before pre-screen drops."""
    for status in ("over_max_gpus", "infeasible", "pruned"):
        reasons = rows.loc[(rows.status == status) & rows.reason.astype(bool), "reason"]
        if len(reasons):
            return str(reasons.value_counts().index[0])
    return "no candidate of this type was searched"


def _checked_prices(prices: Any) -> dict[str, float]:
    """`prices` as {hardware id: $ per GPU-hour}, each a finite number >= 0; a negative, NaN or text price was used
    as given (a negative $/hour ranked first)."""
    if not isinstance(prices, dict):
        raise SpecError(f"prices: expected {{hardware id: $ per GPU-hour}}, got {prices!r}")
    for hw_id, price in prices.items():
        ok = isinstance(price, int | float) and not isinstance(price, bool) and math.isfinite(price) and price >= 0
        if not ok:
            raise SpecError(f"prices[{hw_id!r}]: expected a finite number of $ per GPU-hour >= 0, got {price!r}")
    return prices


def by_hardware(candidates: pd.DataFrame, target_rate: float, prices: dict[str, float] | None = None,
                hours_per_month: float = HOURS_PER_MONTH) -> dict[str, dict[str, Any]]:
    """{hardware_id: {candidate, gpus, price_per_gpu_hour_usd, cost_per_hour_usd, cost_per_month_usd, headroom_pct,
    capacity_rps, ttft_p90_s, tpot_p90_s, feasible, reason}} from plan()'s candidates, cheapest feasible per type.

    `prices` ($/GPU-hour per hardware id) replaces the hardware files' prices; the ranking follows the new costs.
    Headroom: how far the fleet's capacity within the SLOs exceeds the target, in % of the target; a lower bound
    where `capacity_exact` is False (plan() searched that capacity only until the replica count was settled)."""
    out: dict[str, dict[str, Any]] = {}
    prices = _checked_prices(prices or {})
    for hw_id, rows in candidates.groupby("hardware", sort=False):
        feas = rows[rows.status == "feasible"].copy()
        price = prices.get(hw_id)
        if price is None and "price_per_gpu_hour_usd" in rows and rows.price_per_gpu_hour_usd.notna().any():
            price = float(rows.price_per_gpu_hour_usd.dropna().iloc[0])
        if feas.empty:
            out[hw_id] = {"candidate": None, "gpus": None, "price_per_gpu_hour_usd": price, "cost_per_hour_usd": None,
                          "cost_per_month_usd": None, "headroom_pct": None, "capacity_rps": None,
                          "capacity_exact": None, "capacity_hi_rps": None, "ttft_p90_s": None, "tpot_p90_s": None,
                          "feasible": False, "reason": _why_not(rows)}
            continue
        feas["_cost"] = feas.gpus.astype(float) * (price if price is not None else feas.price_per_gpu_hour_usd)
        best = feas.sort_values(["_cost", "gpus"], kind="stable").iloc[0]
        cost = _num(best["_cost"])
        cap = _num(best.get("max_rate_meeting_slo"))
        out[hw_id] = {
            "candidate": best["candidate"], "gpus": int(best["gpus"]), "price_per_gpu_hour_usd": price,
            "cost_per_hour_usd": cost, "cost_per_month_usd": cost * hours_per_month if cost is not None else None,
            "headroom_pct": (cap / target_rate - 1.0) * 100.0 if cap is not None else None, "capacity_rps": cap,
            "capacity_exact": bool(best.get("capacity_exact", True)),
            "capacity_hi_rps": (_num(best.get("bracket_hi_rps")) * float(best["replicas"])
                                if _num(best.get("bracket_hi_rps")) is not None and "replicas" in best else None),
            "ttft_p90_s": _num(best.get("ttft_p90_s")), "tpot_p90_s": _num(best.get("tpot_p90_s")),
            "feasible": True, "reason": "",
        }
    return out


def by_hardware_frame(table: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """by_hardware() as a frame, one row per GPU type, cheapest first and impossible ones last."""
    frame = pd.DataFrame([{"hardware": k, **v} for k, v in table.items()])
    if frame.empty:
        return frame
    return frame.sort_values(["feasible", "cost_per_hour_usd"], ascending=[False, True], na_position="last",
                             kind="stable").reset_index(drop=True)


def _serving_numbers(serving: Any) -> dict[str, Any]:
    return {"max_num_seqs": serving.max_num_seqs, "max_num_batched_tokens": serving.max_num_batched_tokens,
            "gpu_memory_utilization": serving.gpu_memory_utilization, "chunked_prefill": serving.chunked_prefill,
            "mixed_batches": bool(getattr(serving, "mixed_batches", True)),
            "ep": int(getattr(serving, "ep", None) or 1)}


def pool_label(pool: dict) -> str:
    """'EPD 3 x tp2', with the expert-parallel degree when the pool has one ('EPD 1 x tp8 ep8')."""
    ep = int(pool.get("ep") or 1)
    return f"{pool['role']} {pool['instances']} x tp{pool['tp']}" + (f" ep{ep}" if ep > 1 else "")


def deploy_commands(recommended: dict | None, model: Any, serving: Any) -> dict[str, str] | None:
    """`vllm serve ...` and `python -m sglang.launch_server ...` for one replica of the recommended configuration.

    `model`: the ModelSpec (its `hf_repo`, else its name, which the user must replace with a repo id); `serving`: the
    scenario's ServingSpec (its ep only when `recommended` names none: plan(ep=[1, 8]) may pick another degree).
    Disaggregated layouts get one line per pool role with a comment; wiring the pools together is the runtime's own
    disaggregation setup, which these lines do not cover."""
    if recommended is None:
        return None
    repo = getattr(model, "hf_repo", None) or model.name
    unknown = "" if getattr(model, "hf_repo", None) else (
        f"\n# the model file has no hf_repo: replace '{model.name}' with its Hugging Face repo id")
    s = _serving_numbers(serving)
    tp = int(recommended["tp"])
    ep = int(recommended.get("ep") or s["ep"])
    vllm = [f"vllm serve {repo}", f"--tensor-parallel-size {tp}", f"--max-num-seqs {s['max_num_seqs']}",
            f"--max-num-batched-tokens {s['max_num_batched_tokens']}",
            f"--gpu-memory-utilization {s['gpu_memory_utilization']:g}",
            "--enable-chunked-prefill" if s["chunked_prefill"] else "--no-enable-chunked-prefill"]
    sglang = [f"python -m sglang.launch_server --model-path {repo}", f"--tp-size {tp}",
              f"--max-running-requests {s['max_num_seqs']}",
              f"--chunked-prefill-size {s['max_num_batched_tokens'] if s['chunked_prefill'] else -1}",
              f"--mem-fraction-static {s['gpu_memory_utilization']:g}"]
    if s["chunked_prefill"] and s["mixed_batches"]:  # what was simulated: decodes and prefill chunks in one step
        sglang.append("--enable-mixed-chunk")  # (vLLM V1 always; SGLang's default is prefill first, unmixed)
    if ep > 1:
        vllm.append("--enable-expert-parallel")
        sglang.append(f"--ep-size {ep}")
    pools = recommended.get("pools") or []
    head = (f"# {recommended['replicas']} replica(s) of this server behind a load balancer"
            if recommended.get("layout") == "agg" else
            "# disaggregated pools: " + ", ".join(pool_label(p) for p in pools)
            + "; one server per instance, connected by the runtime's disaggregation setup (not generated)")
    head += unknown
    return {"vllm": head + "\n" + " \\\n  ".join(vllm), "sglang": head + "\n" + " \\\n  ".join(sglang)}


__all__ = ["HOURS_PER_MONTH", "LOW_HEADROOM_PCT", "by_hardware", "by_hardware_frame", "deploy_commands", "pool_label"]
