"""`lvlmsim sweep` and `lvlmsim plan`: thin faces over lvlmsim.planner.sweep() and plan().

Registered on the main Typer app by lvlmsim.cli (`register(app)`); the CLI helpers are imported inside register() so
that importing this module first does not start a circular import of lvlmsim.cli.

Exit status: 0 done; 1 `plan` found no configuration meeting the SLOs (the verdict says why; --json still prints the
document, with "recommended": null); 2 bad input (one line naming the field); 130 a sweep interrupted (what finished
is kept in --out, and the same command resumes it).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from lvlmsim.cli.request_flags import (
    ImageSizeOpt,
    ImagesOpt,
    ModelOpt,
    OutputOpt,
    PromptOpt,
    VideoOpt,
    scenario_with_flags,
)
from lvlmsim.errors import LvlmsimError

SHOW_ROWS = 40


def _missing(v) -> bool:
    """None, NaN or pandas' NA (whose truth value raises)."""
    if v is None:
        return True
    try:
        return bool(v != v)
    except TypeError:
        return True


def _fmt_s(v) -> str:
    from lvlmsim.cli import fmt_time

    if _missing(v) or not math.isfinite(float(v)):
        return "-"
    return fmt_time(float(v))


def _fmt(v, spec: str = ".3g") -> str:
    if _missing(v):
        return "-"
    try:
        return format(float(v), spec)
    except (TypeError, ValueError):
        return str(v)


def _technique_sets(values: list[str] | None) -> list[list[str]] | None:
    """--techniques 'none' | 'kind:k=v,...;kind:...' (repeatable: one technique set per occurrence)."""
    if not values:
        return None
    from lvlmsim.specs.lists import split_items

    return [[] if v.strip().lower() in ("", "none") else split_items(v, "techniques", ";") for v in values]


def register(app: typer.Typer) -> None:
    from rich.table import Table

    from lvlmsim.cli import err, out, print_json, user_errors
    from lvlmsim.planner.progress import RichBar

    @app.command("sweep")
    @user_errors
    def sweep_cmd(
        spec: Annotated[str, typer.Argument(help="sweep YAML: base scenario + runs and/or a grid of dotted paths")],
        executor: Annotated[str, typer.Option(help="local (process pool) | ray | serial")] = "local",
        workers: Annotated[int | None, typer.Option(help="parallel runs (default: all cores; Ray: its CPUs)")]
        = None,
        address: Annotated[str | None, typer.Option(help="Ray cluster address (default: start a local Ray)")]
        = None,
        out_path: Annotated[str | None, typer.Option("--out", help="results table (.parquet, or .csv); default "
                                                     "<sweep name>.parquet")] = None,
        resume: Annotated[bool, typer.Option(help="skip runs already in --out (--no-resume re-runs them all and "
                                                  "replaces the table: it needs --force when --out exists)")] = True,
        force: Annotated[bool, typer.Option("--force", help="with --no-resume: replace an existing --out")] = False,
        retry_failed: Annotated[bool, typer.Option("--retry-failed", help="re-run rows recorded as errors")]
        = False,
        max_runs: Annotated[int | None, typer.Option("--max-runs", help="stop after this many new runs")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="print the table as JSON records")] = False,
    ) -> None:
        """Run a scenario over axes of its fields in parallel; one row per run, resumable."""
        from lvlmsim.planner.sweep import load_sweep, sweep

        sw = load_sweep(spec)
        if out_path is not None and not out_path.strip():  # Path('') is '.': it read as a folder named '.'
            raise LvlmsimError("--out: empty path; give a results table ending in .parquet or .csv")
        target = Path(out_path) if out_path is not None else Path(f"{sw.spec.name}.parquet")
        if not resume:  # resuming keeps every row of the table; --no-resume writes a new one over it
            from lvlmsim.specs.outputs import refuse_to_replace

            refuse_to_replace([target, target.with_suffix(".csv")] if target.suffix == ".parquet" else [target],
                              "--out", force)
        from lvlmsim.planner.executors import terminate_as_interrupt

        try:
            with terminate_as_interrupt(), RichBar(err, f"sweep {sw.spec.name}") as bar:
                df = sweep(sw, out=target, executor=executor, workers=workers, address=address, resume=resume,
                           retry_failed=retry_failed, max_runs=max_runs, progress=bar)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM
            err.print(f"interrupted: finished runs kept in {target}; run the same command again to resume")
            raise typer.Exit(130) from None
        written = target if target.exists() else target.with_suffix(".csv")
        n_err = int((df.status == "error").sum())
        n_todo = int(df.status.isna().sum()) if "status" in df else 0
        if as_json:
            from lvlmsim.planner.plan import json_rows

            print_json(json_rows(df))
        else:
            t = Table(title=f"sweep {sw.spec.name}: {len(sw)} runs")
            cols = ["run", *sw.axes, "status", "ttft_p90_s", "tpot_p90_s", "throughput_rps", "goodput_rps",
                    "cost_per_hour_usd"]
            for c in cols:
                t.add_column(c)
            for r in df.head(SHOW_ROWS).to_dict("records"):
                cells = []
                for c in cols:
                    v = r.get(c)
                    if c.endswith("_s") and c != "run":
                        cells.append(_fmt_s(v))
                    elif c in ("throughput_rps", "goodput_rps", "cost_per_hour_usd"):
                        cells.append(_fmt(v))
                    else:
                        cells.append("-" if _missing(v) else str(v))
                t.add_row(*cells)
            out.print(t)
            if len(df) > SHOW_ROWS:
                out.print(f"... {len(df) - SHOW_ROWS} more rows in {written}")
            for r in df[df.status == "error"].head(5).to_dict("records"):
                out.print(f"run {r['run']} failed: {r['error']}", highlight=False, soft_wrap=True)
        err.print(f"wrote {written}: {len(df)} rows, {n_err} failed" + (f", {n_todo} not run" if n_todo else ""))

    @app.command("plan")
    @user_errors
    def plan_cmd(
        scenario: Annotated[str | None, typer.Argument(help="scenario id or YAML path; default llava-chat-h100")]
        = None,
        target_rate: Annotated[float, typer.Option("--target-rate", "--rate", help="requests/s to serve "
                                                   "(sessions/s for chat sessions)")] = ...,
        slo: Annotated[str | None, typer.Option("--slo", help="e.g. ttft_p90=1.0,tpot_p90=0.05 (keys: ttft_, "
                                                "tpot_, e2e_ x p50/p90/p99); default: the scenario's")] = None,
        hardware: Annotated[str | None, typer.Option(help="hardware ids, comma-separated; default: the "
                                                     "scenario's")] = None,
        tp: Annotated[str, typer.Option(help="tensor-parallel degrees to try")] = "1,2,4,8",
        ep: Annotated[str, typer.Option(help="expert-parallel degrees of a MoE model to try with each tp they "
                                             "divide, e.g. 1,8")] = "1",
        layouts: Annotated[str, typer.Option(help="agg and/or E+PD:1:2, EP+D:1:1, E+P+D:1:1:2 (instances per "
                                             "pool)")] = ",".join(("agg", "E+PD:1:2", "EP+D:1:1", "E+P+D:1:1:2")),
        techniques: Annotated[list[str] | None, typer.Option("--techniques", help="a technique set, "
                              "'kind:k=v;kind:...' or 'none' (repeatable); default: the scenario's")] = None,
        max_gpus: Annotated[int | None, typer.Option("--max-gpus", help="most GPUs a configuration may use")]
        = None,
        top: Annotated[int, typer.Option(help="configurations to list")] = 10,
        probe_s: Annotated[float, typer.Option("--probe-s", help="seconds of arrivals per capacity probe")] = 30.0,
        tolerance: Annotated[float, typer.Option(help="relative width of the final capacity bracket")] = 0.05,
        verify: Annotated[bool, typer.Option(help="simulate the whole recommended fleet at the target rate")]
        = True,
        exact: Annotated[bool, typer.Option("--exact", help="search every candidate's capacity to the tolerance "
                                            "(default: until its replica count is settled)")] = False,
        executor: Annotated[str, typer.Option(help="local (process pool) | ray | serial")] = "local",
        workers: Annotated[int | None, typer.Option(help="parallel capacity searches (default: all cores)")]
        = None,
        address: Annotated[str | None, typer.Option(help="Ray cluster address (default: a local Ray)")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="print one JSON document")] = False,
        robust: Annotated[bool, typer.Option("--robust", help="price every kernel family at the pessimistic (p90) "
                                             "end of its uncertainty band: a recommendation that holds if the cost "
                                             "model is optimistic")] = False,
        capacity_range: Annotated[bool, typer.Option(
            "--capacity-range", help="also search the recommended configuration's capacity at the p90 and p10 ends "
                                     "of the cost model's uncertainty band")] = False,
        model: ModelOpt = None,
        image_size: ImageSizeOpt = None,
        images: ImagesOpt = None,
        prompt_tokens: PromptOpt = None,
        output_tokens: OutputOpt = None,
        video_s: VideoOpt = None,
    ) -> None:
        """Cheapest hardware/TP/replicas/pool layout serving a target rate within latency SLOs (exit 1: none).

        --model, --image-size, --images, --prompt-tokens, --output-tokens and --video-s replace the scenario's request
        (or the default scenario's); --hardware and --tp list the candidates to try."""
        from lvlmsim.planner.capacity import SearchSettings
        from lvlmsim.planner.plan import plan

        if top < 0:  # head(-1) listed every configuration but the last
            raise LvlmsimError(f"--top: must be a whole number >= 0 (configurations to list), got {top}")

        scenario = scenario_with_flags(scenario, model=model, image_size=image_size, images=images,
                                       prompt_tokens=prompt_tokens, output_tokens=output_tokens, video_s=video_s)
        settings = SearchSettings(probe_duration_s=probe_s, tolerance=tolerance)
        with RichBar(err, "capacity search") as bar:
            res = plan(scenario, target_rate=target_rate, slos=slo, hardware=hardware, tp=tp, ep=ep, layouts=layouts,
                       techniques=_technique_sets(techniques), max_gpus=max_gpus, settings=settings,
                       executor=executor, workers=workers, address=address, verify=verify, exact=exact,
                       progress=bar, robust=robust, capacity_range=capacity_range)
        if as_json:
            print_json(res.to_dict())
        else:
            _print_plan(res, out, top)
        if not res.feasible:
            raise typer.Exit(1)


def _print_plan(res, out, top: int) -> None:
    from rich.table import Table

    slo_txt = ", ".join(f"{k} <= {v:g} s" for k, v in res.slos.items())
    out.print(f"[bold]plan[/] {res.scenario_id} at {res.target_rate:g} req/s; SLOs {slo_txt}")
    if res.scenario is not None:
        from lvlmsim.cli.request_flags import describe_line

        out.print(describe_line(res.scenario, res.target_rate), highlight=False, soft_wrap=True)
    if res.stats.get("robust"):
        out.print("robust: every kernel family priced at the pessimistic (p90) end of its uncertainty band",
                  highlight=False)
    for hw_id, p in (res.stats.get("profiles") or {}).items():
        err_txt = f", expected error ~{p['expected_error_pct']:.0f}%" if p.get("expected_error_pct") else ""
        out.print(f"{hw_id}: priced by {p['profile']} ({p['profile_kind']}{err_txt})", highlight=False)
    if res.stats.get("provenance_note"):
        out.print(f"[yellow]note:[/] {res.stats['provenance_note']}", highlight=False)
    for note in res.stats.get("transfer_notes") or []:
        out.print(f"[yellow]note:[/] {note}", highlight=False)
    rng = (res.recommended or {}).get("capacity_range_rps")
    if rng:
        out.print(f"capacity per replica under the cost model's uncertainty: {rng[0]:.3g} (p90 costs) to "
                  f"{rng[1]:.3g} req/s (p10 costs)", highlight=False)
    df = res.candidates
    feas = df[df.status == "feasible"]
    lat = res.stats.get("pareto_latency", "ttft_p90")

    def table(title: str, rows) -> Table:
        t = Table(title=title)
        for c in ("#", "configuration", "replicas", "GPUs", "$/hour", "capacity/replica", "TTFT p90", "TPOT p90",
                  "tok/s/GPU", "tok/s/user", "verified"):
            t.add_column(c, justify="left" if c == "configuration" else "right")
        for r in rows.to_dict("records"):
            v = r.get("verified")
            t.add_row(_fmt(r.get("rank"), ".0f"), str(r["candidate"]), _fmt(r.get("replicas"), ".0f"),
                      _fmt(r.get("gpus"), ".0f"), _fmt(r.get("cost_per_hour_usd"), ".2f"),
                      ("" if r.get("capacity_exact") else ">= ") + f"{_fmt(r.get('capacity_per_replica_rps'))} req/s",
                      _fmt_s(r.get("ttft_p90_s")),
                      _fmt_s(r.get("tpot_p90_s")), _fmt(r.get("tokens_per_s_per_gpu"), ".0f"),
                      _fmt(r.get("tokens_per_s_per_user"), ".0f"),
                      "yes" if v is True else ("NO" if v is False else ""))
        return t

    if len(feas):
        out.print(table(f"top {min(top, len(feas))} of {len(feas)} configurations meeting the SLOs at the target "
                        "(latency at the operating point)", feas.head(top)))
        out.print(table(f"Pareto front: $/hour vs {lat.replace('_', ' ')}", res.pareto))
        out.print(table("Pareto front: output tokens/s per GPU vs tokens/s per user", res.pareto_throughput))
    st = res.stats
    out.print(f"candidates {st['candidates']}: {st['pruned_analytic']} removed by the analytic pre-screen, "
              f"{st['searched']} searched; {st['des_runs']} DES runs: {st['des_runs_per_candidate_mean']:.1f} per "
              f"candidate (max {st['des_runs_per_candidate_max']}), {st['verify_runs']} fleet verification(s), "
              f"{st['refine_runs']} refining the recommended capacity; {st['wall_s']:.1f} s")
    others = df[df.status.isin(["pruned", "infeasible", "over_max_gpus"])]
    if len(others):
        reasons = others.groupby("reason", sort=False).candidate.apply(list)
        for reason, names in list(reasons.items())[:6]:
            shown = ", ".join(names[:3]) + (f" (+{len(names) - 3})" if len(names) > 3 else "")
            out.print(f"  not chosen: {shown}: {reason}", highlight=False, soft_wrap=True)
    _print_by_hardware(res, out)
    if res.recommended is not None:
        out.print(f"[bold green]recommended:[/] {res.verdict}")
        deploy = res.deploy()
        if deploy:
            out.print("deploy (vLLM):", highlight=False)
            out.print(deploy["vllm"], highlight=False, soft_wrap=True, markup=False)
            out.print("deploy (SGLang):", highlight=False)
            out.print(deploy["sglang"], highlight=False, soft_wrap=True, markup=False)
    else:
        out.print(f"[bold red]no feasible configuration:[/] {res.verdict}")


def _print_by_hardware(res, out) -> None:
    """One row per GPU type: the planner's answer at a glance (lvlmsim.planner.summary.by_hardware)."""
    from rich.table import Table

    from lvlmsim.fmt import fmt_pct, fmt_time, fmt_usd
    from lvlmsim.planner.summary import LOW_HEADROOM_PCT, by_hardware_frame

    frame = by_hardware_frame(res.by_hardware())
    t = Table(title="per GPU type: cheapest configuration meeting the SLOs")
    for c in ("GPU", "configuration", "GPUs", "$/hour", "$/month", "headroom", "TTFT p90", "TPOT p90"):
        t.add_column(c, justify="left" if c in ("GPU", "configuration") else "right")
    for r in frame.to_dict("records"):
        if r["feasible"]:
            t.add_row(r["hardware"], r["candidate"], str(r["gpus"]), fmt_usd(r["cost_per_hour_usd"]),
                      fmt_usd(r["cost_per_month_usd"]),
                      ("" if r["capacity_exact"] else ">= ") + fmt_pct(r["headroom_pct"]), fmt_time(r["ttft_p90_s"]),
                      fmt_time(r["tpot_p90_s"]))
        else:
            t.add_row(r["hardware"], f"not possible because {r['reason']}", *[""] * 6)
    out.print(t)
    low = frame[frame.feasible & (frame.headroom_pct < LOW_HEADROOM_PCT)]
    for r in low.to_dict("records"):
        out.print(f"[yellow]warning:[/] {r['hardware']} has {fmt_pct(r['headroom_pct'])} headroom (< "
                  f"{LOW_HEADROOM_PCT:.0f}%): a burst or a model error of that size breaks the SLOs")


__all__ = ["register"]
