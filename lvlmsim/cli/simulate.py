"""`lvlmsim simulate`: run a scenario through the serving engine and print what it cost.

Registered on the main Typer app by lvlmsim.cli (`register(app)`). The CLI helpers are imported inside register()
so that importing this module first (tests) does not start a circular import of lvlmsim.cli.
"""

from __future__ import annotations

import time
from typing import Annotated

import typer

from lvlmsim.cli.request_flags import (
    PROFILE_CHOICES,
    ImageSizeOpt,
    ImagesOpt,
    ModelOpt,
    OutputOpt,
    PromptOpt,
    VideoOpt,
    scenario_with_flags,
)
from lvlmsim.errors import LvlmsimError


class _Progress:
    """A rich progress bar on stderr that appears only when a run lasts over a second and stderr is a terminal."""

    def __init__(self, console, delay_s: float = 1.0):
        self.console = console
        self.delay_s = delay_s
        self.t0 = time.perf_counter()
        self.bar = None
        self.task = None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            if not self.console.is_terminal or time.perf_counter() - self.t0 < self.delay_s:
                return
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

            self.bar = Progress("simulating", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                console=self.console, transient=True)
            self.bar.start()
            self.task = self.bar.add_task("simulating", total=total)
        self.bar.update(self.task, completed=done)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _fmt(v, unit: str = "s") -> str:
    if v is None:
        return "-"
    if unit == "s":
        from lvlmsim.cli import fmt_time

        return fmt_time(v)
    return f"{v:.3g}"


def print_summary(result, out) -> None:
    """The human-readable report of a run."""
    from rich.table import Table

    s = result.summary
    meta = result.meta
    pools = ", ".join(f"{p['name']}: {p['instances']}x {p['hardware']} tp={p['tp']}"
                      + (f" ep={p['ep']}" if p.get("ep", 1) > 1 else "") for p in meta["pools"])
    t = Table(title=f"{meta['id']}: {meta['model']} on {pools} (seed {meta['seed']})")
    for col in ("latency", "mean", "p50", "p90", "p99"):
        t.add_column(col, justify="left" if col == "latency" else "right")
    rows = [("TTFT", "ttft_s"), ("TPOT", "tpot_s"), ("inter-token", "itl_s"), ("end-to-end", "e2e_s"),
            ("queueing", "queue_s")]
    if "transfer_s" in s:
        rows.append(("transfers", "transfer_s"))
    for label, key in rows:
        st = s[key]
        t.add_row(label, *(_fmt(st[k]) for k in ("mean", "p50", "p90", "p99")))
    out.print(t)
    if "summary_mode" in s:
        out.print(f"streaming summary: percentiles within {s['summary_mode']['percentile_relative_error']:.2%} "
                  "(log-binned sketches; no per-request table kept)", highlight=False)
    slo = s["slo_attainment"]
    out.print(
        f"requests {s['requests']}: completed {s['completed']}, rejected {s['rejected']}, in flight {s['in_flight']} "
        f"over {s['span_s']:.1f} s simulated"
    )
    out.print(
        f"throughput {s['throughput_rps']:.2f} req/s, {s['output_tokens_per_s']:.0f} output tok/s; goodput "
        f"{s['goodput_rps']:.2f} req/s; SLO attainment {slo:.1%}" if slo is not None else "no requests arrived"
    )
    sat = s["saturation"]
    out.print(f"saturation: [bold]{sat['verdict']}[/] ({sat['why']})")
    peak = s["peak_kv_occupancy"]
    out.print(f"peak KV occupancy {peak:.0%}, preemptions {s['preemptions']}, batch steps {s['steps']}"
              if peak is not None else f"preemptions {s['preemptions']}, batch steps {s['steps']}")
    reuse = s.get("reuse")
    if reuse:
        parts = [f"{name.replace('_', ' ')} hit rate {c['hit_rate']:.0%} ({c['hits']}/{c['hits'] + c['misses']}, "
                 f"{c['evictions']} evicted)" for name, c in ((k, reuse.get(k)) for k in ("encoder_cache", "kv_cache"))
                 if c and c["hits"] + c["misses"]]
        out.print("reuse: " + ("; ".join(parts) if parts else "no image ids to look up (nothing to reuse)")
                  + f"; {reuse['images_not_encoded']} of {reuse['images_seen']} images not encoded, "
                  f"{reuse['prefill_tokens_saved']} prefill tokens saved")
    usd = s["usd_per_1m_output_tokens"]
    jpt = s["joules_per_output_token"]
    out.print(f"cost: ${s['cost_usd']:.2f} for {s['gpus']} GPU(s)"
              + (f", ${usd:.3f} per 1M output tokens" if usd is not None else "")
              + (f"; energy {s['energy_j'] / 3.6e6:.3f} kWh" if s["energy_j"] is not None
                 else "; energy unknown (no published power figure for this hardware)")
              + (f" ({jpt:.2f} J/token)" if jpt is not None else ""))
    it = Table(title="instances")
    for col in ("instance", "hardware", "tp", "steps", "utilisation", "peak KV", "mean queue"):
        it.add_column(col)
    for r in s["instances"]:
        pk = r["peak_kv_occupancy"]
        it.add_row(r["instance"], r["hardware"], str(r["tp"]), str(r["steps"]), f"{r['utilisation']:.0%}",
                   f"{pk:.0%}" if pk is not None else "-", f"{r['queue_len_mean']:.2f}")
    out.print(it)


def register(app: typer.Typer) -> None:
    from lvlmsim.cli import err, out, print_json, user_errors

    @app.command("simulate")
    @user_errors
    def simulate_cmd(
        scenario: Annotated[
            str | None,
            typer.Argument(help="scenario id (lvlmsim list scenarios) or YAML path; default llava-chat-h100"),
        ] = None,
        requests: Annotated[int | None, typer.Option("--requests", "-n", help="requests to simulate")] = None,
        rate: Annotated[float | None, typer.Option("--rate", help="arrival rate, requests/s (sessions/s for chats)")]
        = None,
        seed: Annotated[int | None, typer.Option("--seed", help="random seed")] = None,
        out_dir: Annotated[str | None, typer.Option("--out", help="write requests, timeseries and summary here")]
        = None,
        force: Annotated[bool, typer.Option("--force", help="replace an earlier run's files in --out (refused "
                                                            "otherwise)")] = False,
        profile: Annotated[str | None, typer.Option(help=f"{PROFILE_CHOICES} (default: the scenario's, else "
                                                         "auto)")] = None,
        runtime: Annotated[str | None, typer.Option(
            help="serving runtime: vllm | sglang | trtllm | eager (kernel floor + per-step launch overhead); "
                 "overrides the scenario's serving.runtime")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="print the summary as one JSON document")] = False,
        stream: Annotated[bool, typer.Option(
            "--stream", help="streaming summaries: fold requests as they end (memory independent of --requests; "
                             "percentiles within 0.5%); automatic above 200000 requests without --out")] = False,
        uncertainty: Annotated[int | None, typer.Option(
            "--uncertainty", help="re-run N times under drawn per-family cost-model errors and report the spread "
                                  "of p90 latencies and throughput")] = None,
        model: ModelOpt = None,
        hardware: Annotated[str | None, typer.Option("--hardware", help="hardware id or YAML path; replaces the "
                                                     "scenario's")] = None,
        tp: Annotated[int | None, typer.Option("--tp", help="tensor-parallel degree of each replica")] = None,
        image_size: ImageSizeOpt = None,
        images: ImagesOpt = None,
        prompt_tokens: PromptOpt = None,
        output_tokens: OutputOpt = None,
        video_s: VideoOpt = None,
    ) -> None:
        """Simulate serving a scenario: queues, batching, KV cache, pools; latency percentiles, goodput, cost.

        The request flags (--model, --hardware, --tp, --image-size, --images, --prompt-tokens, --output-tokens,
        --video-s) replace those fields of the scenario (or of the default one) and keep its arrivals and serving."""
        from lvlmsim.engine.api import simulate

        scenario = scenario_with_flags(scenario, model=model, hardware=hardware, tp=tp, image_size=image_size,
                                       images=images, prompt_tokens=prompt_tokens, output_tokens=output_tokens,
                                       video_s=video_s)
        if stream and out_dir is not None:
            raise LvlmsimError("--stream: keeps no per-request table, so it cannot be combined with --out")
        if stream and uncertainty is not None:
            raise LvlmsimError("--stream: the --uncertainty re-runs do not stream; allowed: one of --stream, "
                               "--uncertainty")
        if out_dir is not None:
            from lvlmsim.engine.api import RESULT_FILES
            from lvlmsim.specs.outputs import check_out_dir, refuse_to_replace

            # before the run: a bad path, or an earlier run's files that would be lost, must not cost the simulation
            refuse_to_replace([check_out_dir(out_dir) / n for n in RESULT_FILES], "--out", force)
        bar = _Progress(err)
        spread = None
        try:
            if uncertainty is not None:
                from lvlmsim.engine.uncertainty import uncertainty_runs

                both = uncertainty_runs(scenario, uncertainty, profile=profile, requests=requests, rate=rate,
                                        seed=seed, runtime=runtime)
                res, spread = both["result"], both["uncertainty"]
            else:
                keep = False if stream else (True if out_dir is not None else None)
                res = simulate(scenario, requests=requests, rate=rate, seed=seed, progress=bar, profile=profile,
                               runtime=runtime, keep_requests=keep)
        finally:
            bar.close()
        res.check_servable()
        if out_dir is not None:
            for p in res.write(out_dir):
                err.print(f"wrote {p}", highlight=False)
        from lvlmsim.calibrate.profiles import transfer_notes

        # devices the general model prices outside every category it was fitted on (absent otherwise)
        transfers = transfer_notes([p["hardware"] for p in res.meta.get("pools") or []],
                                   profile if profile is not None else res.scenario.profile)
        if as_json:
            print_json({"scenario": res.meta, **res.summary, **({"uncertainty": spread} if spread else {}),
                        **({"transfer_notes": transfers} if transfers else {})})
            return
        from lvlmsim.cli.request_flags import describe_line

        out.print(describe_line(res.scenario), highlight=False, soft_wrap=True)
        print_summary(res, out)
        if res.rejection_text():
            out.print(f"note: {res.rejection_text()}", highlight=False, soft_wrap=True)
        for note in transfers:
            out.print(f"note: {note}", highlight=False, soft_wrap=True)
        if spread:
            out.print(f"cost-model uncertainty over {spread['draws']} draws (p10 / p50 / p90):", highlight=False)
            for name in ("ttft_s_p90", "tpot_s_p90", "throughput_rps"):
                e = spread[name]
                if e["p50"] is not None:
                    line = f"  {name:<16} {e['p10']:.4g} / {e['p50']:.4g} / {e['p90']:.4g}  (point {e['point']:.4g})"
                    out.print(line, highlight=False)


__all__ = ["print_summary", "register"]
