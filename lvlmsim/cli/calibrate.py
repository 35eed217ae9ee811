"""The `calibrate` and `validate` commands; `register(app)` adds them to the main Typer app."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated

import typer

from lvlmsim.errors import LvlmsimError, SpecError
from lvlmsim.specs.outputs import strict_json


def _fail(msg: str) -> typer.Exit:
    typer.echo(f"error: {msg}", err=True)
    return typer.Exit(2)


def _user_errors(fn):
    """One line on stderr and exit status 2 for every user error (the main CLI does the same for its commands)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except LvlmsimError as exc:
            raise _fail(str(exc)) from None

    return wrapper


def _hardware(ref: str):
    from lvlmsim.specs.registry import load_hardware

    try:
        return load_hardware(ref)
    except SpecError as exc:
        msg = str(exc)
        raise SpecError(msg if msg.startswith("--hardware") else f"--hardware: {msg}") from None


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.1f}"


def calibrate_cmd(
    device: Annotated[str, typer.Option("--device", help="cpu or cuda")] = "cpu",
    out: Annotated[Path, typer.Option("--out", help="profile JSON to write (required: nothing is written where you "
                                                    "did not ask); the raw CSV goes beside it")] = ...,
    quick: Annotated[bool, typer.Option("--quick", help="small suite (< 60 s on a 2-core CPU), for CI")] = False,
    hardware: Annotated[str | None, typer.Option(
        "--hardware", help="hardware id whose datasheet peaks the efficiencies are relative to "
                           "(default: cpu-generic for cpu, the matching GPU id for cuda)")] = None,
    threads: Annotated[int | None, typer.Option("--threads", help="CPU threads (default: torch's)")] = None,
    seed: Annotated[int, typer.Option("--seed", help="seed of the fit/holdout split")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="print the per-family summary as JSON")] = False,
    force: Annotated[bool, typer.Option("--force", help="replace --out and the CSV beside it if they exist (refused "
                                                        "otherwise)")] = False,
) -> None:
    """Microbenchmark this machine, fit an efficiency profile, and report its held-out error per op family."""
    from lvlmsim.calibrate import bench
    from lvlmsim.calibrate.run import calibrate, profile_summary
    from lvlmsim.specs.outputs import refuse_to_replace

    if device not in bench.DEVICES:
        raise SpecError(f"--device: '{device}' is not one of {', '.join(bench.DEVICES)}")
    if out.suffix.lower() == ".json":  # before minutes of timing (another suffix is refused by calibrate())
        refuse_to_replace([out, out.with_suffix(".csv")], "--out", force)
    hw = _hardware(hardware) if hardware is not None else None  # '' is refused, not the default device
    log = None if as_json else (lambda s: typer.echo(s, err=True))
    prof = calibrate(device, out, quick=quick, hardware=hw, threads=threads, seed=seed, log=log)
    rows = profile_summary(prof)
    if as_json:
        typer.echo(strict_json({"profile": str(out), "timing_s": prof.meta.get("timing_s"), "families": rows},
                               indent=2))
        return
    typer.echo(f"profile {out} ({prof.meta.get('measurements_csv')} beside it), relative to '{prof.hardware_id}'")
    typer.echo(f"{'family':<14}{'fit':>6}{'held':>6}{'median %':>10}{'p90 %':>9}{'roofline %':>12}")
    for r in rows:
        typer.echo(f"{r['family']:<14}{r['n_fit']:>6}{r['n_holdout']:>6}{_fmt(r['holdout_median_abs_pct_err']):>10}"
                   f"{_fmt(r['holdout_p90_abs_pct_err']):>9}{_fmt(r['roofline_default_median_abs_pct_err']):>12}")


def validate_cmd(
    data: Annotated[Path, typer.Option("--data", help="a <gpu>/ folder in aiconfigurator's systems/data layout "
                                                      "(with --leave-one-out: the folder of <gpu>/ folders)")],
    hardware: Annotated[str | None, typer.Option(
        "--hardware", help="hardware id (or YAML path) the data was measured on")] = None,
    profile: Annotated[str | None, typer.Option(
        "--profile", help="profile JSON, or auto|general|default|peak (default auto: the device's own measured "
                          "profile, else the device-general model)")] = None,
    leave_one_out: Annotated[bool, typer.Option(
        "--leave-one-out", help="fit the device-general model on every device folder under --data but one, test on "
                                "that one, for each device")] = False,
    seed: Annotated[int, typer.Option("--seed", help="seed of the row subsample (--leave-one-out)")] = 0,
    seeds: Annotated[int, typer.Option(
        "--seeds", help="run --leave-one-out at N subsample seeds (--seed, --seed + 1, ...) and report each figure's "
                        "mean \\[min-max] over them")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="print {family: {...}} as JSON ({device folder: {family: "
                                                          "{...}}} with --leave-one-out); each cell's `skipped` "
                                                          "counts the rows left out, by reason")] = False,
) -> None:
    """Predicted vs measured kernel time per family and size regime, calibrated profile vs roofline default."""
    if seeds < 1:
        raise SpecError(f"--seeds: must be a whole number >= 1 (subsample seeds to run), got {seeds}")
    if seed < 0:  # numpy's generators take seeds >= 0; the subsample failed after the data was read
        raise SpecError(f"--seed: must be a whole number >= 0, got {seed}")
    if leave_one_out:
        if hardware or profile:
            raise SpecError("--leave-one-out: takes no --hardware or --profile (every device folder under --data is "
                            "held out in turn and priced by its own datasheet)")
        if seeds > 1:
            return _leave_one_out_seeds(data, list(range(seed, seed + seeds)), as_json)
        return _leave_one_out(data, seed, as_json)
    if seeds != 1 or seed != 0:
        flag = "--seeds" if seeds != 1 else "--seed"
        raise SpecError(f"{flag}: only with --leave-one-out (validate on one device reads every row, no subsample)")
    if not hardware:
        raise SpecError("--hardware: required (a hardware id such as a100-sxm-80gb), unless --leave-one-out")
    from lvlmsim.calibrate.profiles import load_profile_for
    from lvlmsim.calibrate.validate import validate

    hw = _hardware(hardware)
    if not data.is_dir():
        raise SpecError(f"--data: '{data}' is not a folder; expected a <gpu>/ folder of aiconfigurator's layout "
                        f"(<op>/<framework>/<version>/*_perf.csv)")
    prof = load_profile_for(hw, profile)
    report, info = validate(hw, data, prof)
    if as_json:
        typer.echo(strict_json(report, indent=2))
        return
    out = sys.stdout
    out.write(f"{info['rows']} measured rows from {len(info['files'])} tables under {data}; hardware {hw.id}; "
              f"profile {info['profile']}\n")
    for e in report.values():  # every family's, the `moe` family's own loader's too
        for reason, n in e["skipped"].items():
            out.write(f"  skipped {n} rows: {reason}\n")
    head = f"{'family / regime':<34}{'n':>7}{'median %':>10}{'p90 %':>9}{'roofline med %':>16}{'roofline p90 %':>16}\n"
    out.write(head)
    for fam, e in report.items():
        out.write(f"{fam:<34}{e['n']:>7}{_fmt(e['median_abs_pct_err']):>10}{_fmt(e['p90_abs_pct_err']):>9}"
                  f"{_fmt(e['roofline_median_abs_pct_err']):>16}{_fmt(e['roofline_p90_abs_pct_err']):>16}\n")
        for lab, r in e["regimes"].items():
            out.write(f"{'  ' + lab:<34}{r['n']:>7}{_fmt(r['median_abs_pct_err']):>10}{_fmt(r['p90_abs_pct_err']):>9}"
                      f"{_fmt(r['roofline_median_abs_pct_err']):>16}{_fmt(r['roofline_p90_abs_pct_err']):>16}\n")
        out.write(f"{'  source':<34}{', '.join(e['profile_sources'])}\n")
        loo = e.get("leave_one_device_out")
        if loo:  # the mla family: a fit made on the other devices' tables only
            out.write(f"{'  fitted on ' + ', '.join(loo['fitted_on']):<34}{e['n']:>7}"
                      f"{_fmt(loo['median_abs_pct_err']):>10}{_fmt(loo['p90_abs_pct_err']):>9}\n")


def _leave_one_out(data: Path, seed: int, as_json: bool) -> None:
    from lvlmsim.calibrate.bands import nested_coverage, pooled_coverage
    from lvlmsim.calibrate.loo import leave_one_out, solve_summary

    log = None if as_json else (lambda s: typer.echo(s, err=True))
    report, resid, info = leave_one_out(data, seed=seed, log=log)
    if as_json:
        typer.echo(strict_json(report, indent=2))
        return
    out = sys.stdout
    out.write(f"leave-one-device-out under {data}: {', '.join(f'{k} {v} rows' for k, v in info['rows'].items())} "
              f"(seeded subsample of <= {info['max_rows_per_table']} rows per table), {info['seconds']} s; "
              f"{solve_summary(info['solves'])}\n")
    out.write(f"{'held-out device':<24}{'family':<24}{'n':>7}{'median %':>10}{'p90 %':>9}{'flat derate med %':>19}\n")
    for dev, fams in report.items():
        for fam, e in fams.items():
            out.write(f"{dev:<24}{fam:<24}{e['n']:>7}{_fmt(e['median_abs_pct_err']):>10}"
                      f"{_fmt(e['p90_abs_pct_err']):>9}{_fmt(e['roofline_median_abs_pct_err']):>19}\n")
    _write_skipped(out, report)
    cov = nested_coverage(resid, seed=seed)
    pooled = pooled_coverage(cov)
    pooled_text = "-" if pooled is None else f"{pooled:.2f}"
    out.write("p10-p90 band coverage of each device's held-out rows, band derived without that device "
              f"(lvlmsim.calibrate.bands; target ~0.80; all rows pooled {pooled_text}):\n")
    for dev, per_key in cov.items():
        out.write(f"  {dev:<22}" + "  ".join(f"{k} {c['coverage']:.2f}" for k, c in per_key.items()) + "\n")


def _leave_one_out_seeds(data: Path, seeds: list[int], as_json: bool) -> None:
    from lvlmsim.calibrate.bands import nested_coverage, pooled_coverage
    from lvlmsim.calibrate.loo import leave_one_out_seeds, solve_summary

    log = None if as_json else (lambda s: typer.echo(s, err=True))
    report, resid, info = leave_one_out_seeds(data, seeds, log=log)
    if as_json:
        typer.echo(strict_json(report, indent=2))
        return
    out = sys.stdout
    seed_text = f"seeds {seeds[0]}-{seeds[-1]}"
    out.write(f"leave-one-device-out under {data}: {', '.join(f'{k} {v} rows' for k, v in info['rows'].items())} "
              f"(seeded subsample of <= {info['max_rows_per_table']} rows per table), {seed_text}, "
              f"{info['seconds']} s; {solve_summary(info['solves'])}\n")
    out.write(f"{'held-out device':<24}{'family':<24}{'n':>7}{'median % mean [min-max]':>25}"
              f"{'p90 % mean [min-max]':>23}{'flat derate med %':>19}\n")
    for dev, fams in report.items():
        for fam, e in fams.items():
            out.write(f"{dev:<24}{fam:<24}{e['n']:>7}{_spread(e, 'median_abs_pct_err'):>25}"
                      f"{_spread(e, 'p90_abs_pct_err'):>23}{_fmt(e['roofline_median_abs_pct_err']):>19}\n")
    _write_skipped(out, report)
    covs = [nested_coverage(r, seed=s) for r, s in zip(resid, seeds, strict=True)]
    pooled = [p for p in (pooled_coverage(c) for c in covs) if p is not None]
    pooled_text = "-" if not pooled else f"{sum(pooled) / len(pooled):.2f}"
    out.write(f"p10-p90 band coverage of each device's held-out rows, band derived without that device, mean over "
              f"{seed_text} (lvlmsim.calibrate.bands; target ~0.80; all rows pooled {pooled_text}):\n")
    for dev in dict.fromkeys(d for c in covs for d in c):
        keys = dict.fromkeys(k for c in covs for k in c.get(dev, {}))
        means = {k: [c[dev][k]["coverage"] for c in covs if k in c.get(dev, {})] for k in keys}
        out.write(f"  {dev:<22}" + "  ".join(f"{k} {sum(v) / len(v):.2f}" for k, v in means.items()) + "\n")


def _spread(e: dict, stat: str) -> str:
    """'mean [min-max]' of one several-seed statistic ('-' for a table whose every row was skipped)."""
    if e[stat] is None:
        return "-"
    return f"{e[stat]:.1f} [{e[stat + '_min']:.1f}-{e[stat + '_max']:.1f}]"


def _write_skipped(out, report: dict) -> None:
    """The rows each held-out device's tables left out, and why (the JSON's per-cell `skipped`)."""
    lines = [f"  {dev:<22}skipped {n} rows: {reason}\n" for dev, fams in report.items() for e in fams.values()
             for reason, n in e.get("skipped", {}).items()]
    if lines:
        out.write("rows left out of each device's (subsampled) tables:\n" + "".join(lines))


def register(app: typer.Typer) -> None:
    """Add `calibrate` and `validate` to `app`."""
    app.command("calibrate")(_user_errors(calibrate_cmd))
    app.command("validate")(_user_errors(validate_cmd))
