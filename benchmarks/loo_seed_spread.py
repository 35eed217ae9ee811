"""How stable are the leave-one-device-out figures we quote? Their spread over subsample seeds, by source (issue 11).

    python benchmarks/loo_seed_spread.py                       # seeds 0-3, fit settings 800:300 ... (below)
    python benchmarks/loo_seed_spread.py --fits 800:300 --seeds 0 1 --no-moe --no-mla   # a quick look
    python benchmarks/loo_seed_spread.py --json out.json       # also the whole grid as JSON

`lvlmsim validate --leave-one-out` draws two seeded subsamples, both from one seed: the rows of every table it reads
(lvlmsim.calibrate.loo.MAX_ROWS_PER_TABLE, per device) and, of the training devices' rows, the ROWS_PER_DEVICE rows
per family the general fit sees (lvlmsim.calibrate.general). Here the two roles are decoupled: a fold's model is
fitted at fit seed s (training devices' tables read at seed s, fit subsample at seed s) and scored on the held-out
device's tables read at evaluation seed e, for every (s, e) pair. Then

* the quoted figure at seed k is the diagonal s = e = k (what `validate --leave-one-out --seed k` prints);
* (i) fit spread: the range over s of a cell's median |error| at fixed e, averaged over e (the fit's training
  subsample moves the model);
* (ii) evaluation spread: the range over e at fixed s, averaged over s (a different sample of the held-out rows).

Repeated at each `--fits` setting ROWS:GRID (ROWS_PER_DEVICE, the fit rows per device per family, and GRID_ROWS, the
rows per device of those the tile hyper-parameters' grid search scores each candidate on; 800:800 ships, 800:300 did
before this check): whether a larger fit subsample removes most of (i), what it costs in CPU, and whether it moves the
figures systematically (mean of the diagonal). MoE (lvlmsim.calibrate.moe: a seeded FIT_ROWS sample of each training
device, every held-out row scored) has only source (i); MLA (lvlmsim.calibrate.mla: every row, grid search) has no
seed at all. Needs ../shared/data/measured (never copied into the project); about 10 min of CPU with the defaults
(on the shared 2-core machine 8-10 min wall).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lvlmsim.calibrate.general import GRID_ROWS, ROWS_PER_DEVICE, fit_general  # noqa: E402
from lvlmsim.calibrate.loo import MAX_ROWS_PER_TABLE, held_out_report, load_devices  # noqa: E402
from lvlmsim.calibrate.shipped import measured_dir  # noqa: E402

# table family -> short column label (the quoted families of README / calibration/README, windowed rows apart)
FAMILIES = {"gemm": "gemm", "context_attention": "prefill", "context_attention_sliding": "prefill win",
            "generation_attention": "decode", "generation_attention_sliding": "decode win",
            "encoder_attention": "encoder", "nccl": "nccl", "custom_allreduce": "custom AR", "moe": "moe",
            "mla": "mla"}
STATS = ("median_abs_pct_err", "p90_abs_pct_err")
# the shipped setting first, then the grid search on 300 rows (before issue 11) and larger fit subsamples
DEFAULT_FITS = list(dict.fromkeys([f"{ROWS_PER_DEVICE}:{GRID_ROWS}", "800:300", "1600:1600", "3200:3200"]))


def _setting(text: str) -> str:
    """'ROWS:GRID' of two whole numbers >= 1 (argparse type)."""
    parts = text.split(":")
    if len(parts) != 2 or not all(p.isdigit() and int(p) >= 1 for p in parts):
        raise argparse.ArgumentTypeError(f"expected ROWS:GRID (two whole numbers >= 1, e.g. 800:300), got '{text}'")
    return f"{int(parts[0])}:{int(parts[1])}"


def fit_models(data: Path, seeds: list[int], rows: list[str], max_rows: int, log) -> tuple[dict, dict]:
    """{(setting, fit seed, held-out folder): model fitted without that folder}, {setting: CPU seconds of its fits};
    a setting is 'ROWS:GRID'."""
    models, cpu = {}, dict.fromkeys(rows, 0.0)
    for s in seeds:
        devices = load_devices(data, seed=s, max_rows_per_table=max_rows)
        for held in devices:
            train = {devices[n][0].id: v for n, v in devices.items() if n != held}
            for r in rows:
                t0 = time.process_time()
                n_fit, n_grid = (int(x) for x in r.split(":"))
                models[(r, s, held)] = fit_general(train, seed=s, rows_per_device=n_fit, grid_rows=n_grid)
                cpu[r] += time.process_time() - t0
        log(f"fit seed {s}: {len(devices)} folds x rows {rows} ({sum(cpu.values()):.0f} s CPU so far)")
    return models, cpu


def score_models(data: Path, models: dict, seeds: list[int], max_rows: int, log) -> dict:
    """{(rows, fit seed, eval seed, folder): {table family: stats}}: every model on its held-out device's rows read at
    every evaluation seed."""
    out = {}
    for e in seeds:
        devices = load_devices(data, seed=e, max_rows_per_table=max_rows)
        for (r, s, held), model in models.items():
            out[(r, s, e, held)] = held_out_report(model, *devices[held])[0]
        log(f"eval seed {e}: {len(models)} models scored")
    return out


def moe_grid(data: Path, seeds: list[int], log) -> dict:
    """{(fit seed, folder): moe stats}: lvlmsim.calibrate.moe's folds at each fit seed (every held-out row scored)."""
    from lvlmsim.calibrate.loo import DEVICE_FOLDERS, moe_folds
    from lvlmsim.specs.registry import load_hardware

    hws = {n: load_hardware(DEVICE_FOLDERS[n]) for n in DEVICE_FOLDERS if (data / n).is_dir()}
    out = {}
    for s in seeds:
        report: dict = {}
        moe_folds(data, hws, report, seed=s)
        for folder, fams in report.items():
            out[(s, folder)] = fams["moe"]
        log(f"moe fit seed {s}: {len(report)} folds")
    return out


def mla_folds(data: Path) -> dict:
    """{folder: stats} of the MLA leave-one-device-out (benchmarks/mla_fit.py's folds): no subsample, no seed."""
    from lvlmsim.calibrate.loo import DEVICE_FOLDERS
    from lvlmsim.calibrate.mla import DEVICE_DIRS, device_rows, fit_mla, load_mla_modules, predict
    from lvlmsim.calibrate.profiles import load_profile_for
    from lvlmsim.specs.registry import load_hardware

    devices = {}
    for folder, hw_id in DEVICE_DIRS.items():
        rows = load_mla_modules(data / folder).rows if (data / folder).is_dir() else []
        if rows:
            hw = load_hardware(hw_id)
            devices[hw_id] = device_rows(rows, hw, load_profile_for(hw, "auto"))
    folder_of = {v: k for k, v in DEVICE_FOLDERS.items()}
    out = {}
    for held, mine in devices.items():
        fit = fit_mla({k: v for k, v in devices.items() if k != held})
        pred = predict(mine, fit.overhead_decode_s, fit.overhead_prefill_s, fit.e_decode, fit.e_prefill)
        err = np.abs(pred / mine.measured_s - 1.0) * 100.0
        out[folder_of.get(held, held)] = {"median_abs_pct_err": float(np.median(err)),
                                          "p90_abs_pct_err": float(np.percentile(err, 90)), "n": int(len(err))}
    return out


def cell_grid(scores: dict, r: str, seeds: list[int], held: str, fam: str, stat: str) -> np.ndarray | None:
    """grid[s, e] of one statistic (rows r, device, family) over fit seed s and evaluation seed e; None if absent."""
    vals = [[scores[(r, s, e, held)].get(fam, {}).get(stat) for e in seeds] for s in seeds]
    if any(v is None for row in vals for v in row):
        return None
    return np.array(vals, dtype=float)


def spreads(grid: np.ndarray) -> dict[str, float]:
    """Quoted figure (diagonal) mean/min/max, fit spread (range over s at fixed e, mean over e) and evaluation spread
    (range over e at fixed s, mean over s) of one cell's grid[s, e]."""
    diag = np.diag(grid)
    return {"mean": float(diag.mean()), "min": float(diag.min()), "max": float(diag.max()),
            "fit_range": float(np.ptp(grid, axis=0).mean()), "eval_range": float(np.ptp(grid, axis=1).mean()),
            "fit_sd": float(grid.std(axis=0, ddof=1).mean()) if len(diag) > 1 else 0.0,
            "eval_sd": float(grid.std(axis=1, ddof=1).mean()) if len(diag) > 1 else 0.0}


def summarise(scores: dict, moe: dict, mla: dict, seeds: list[int], rows: list[str]) -> dict:
    """{rows: {folder: {family: {stat: spreads}}}}; MoE: fit seeds only (eval range 0), MLA: one value (no seed)."""
    folders = sorted({k[3] for k in scores} | {k[1] for k in moe} | set(mla))
    out: dict = {}
    for r in rows:
        per_dev = out.setdefault(r, {})
        for held in folders:
            for fam in FAMILIES:
                for stat in STATS:
                    if fam == "moe":
                        vals = [moe[(s, held)][stat] for s in seeds if (s, held) in moe]
                        grid = np.repeat(np.array(vals)[:, None], len(vals), axis=1) if len(vals) == len(seeds) \
                            else None
                    elif fam == "mla":
                        grid = np.full((len(seeds), len(seeds)), mla[held][stat]) if held in mla else None
                    else:
                        grid = cell_grid(scores, r, seeds, held, fam, stat) if (r, seeds[0], seeds[0], held) in \
                            scores else None
                    if grid is not None:
                        per_dev.setdefault(held, {}).setdefault(fam, {})[stat] = spreads(grid)
    return out


def print_tables(summary: dict, seeds: list[int], rows: list[str], cpu: dict) -> None:
    base = rows[0]
    seed_text = f"{seeds[0]}-{seeds[-1]}" if len(seeds) > 1 else f"{seeds[0]}"
    for stat, label in zip(STATS, ("median", "p90"), strict=True):
        print(f"\n## {label} |error| %, fit rows:grid rows {base}: quoted figure (s = e) mean [min-max] over seeds "
              f"{seed_text}; fit spread / eval spread (mean range over fit seeds at fixed eval seed / over eval seeds "
              "at fixed fit)")
        print("| held-out device | family | quoted mean [min-max] | fit range | eval range |")
        print("|---|---|---|---|---|")
        for held, fams in summary[base].items():
            for fam, st in fams.items():
                c = st[stat]
                print(f"| {held} | {FAMILIES[fam]} | {c['mean']:.1f} [{c['min']:.1f}-{c['max']:.1f}] | "
                      f"{c['fit_range']:.1f} | {c['eval_range']:.1f} |")
    _pooled(summary, rows, cpu)
    if len(rows) > 1:
        _by_rows(summary, rows)


def _cells(summary: dict, r: str, stat: str, fit_family_only: bool = True) -> list[dict]:
    """Every (device, family) cell's spreads at setting r; fit_family_only: the families the general fit drives."""
    return [st[stat] for fams in summary[r].values() for fam, st in fams.items()
            if not fit_family_only or fam not in ("moe", "mla")]


def _pooled(summary: dict, rows: list[str], cpu: dict) -> None:
    print("\n## pooled over device x family cells (general-model families: no moe / mla)")
    print("| fit rows:grid rows | CPU s of the fits (all seeds x folds) | stat | mean quoted | mean fit range "
          "| mean eval range | max fit range | max eval range |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        for stat in STATS:
            cells = _cells(summary, r, stat)
            q = np.mean([c["mean"] for c in cells])
            fr, er = [c["fit_range"] for c in cells], [c["eval_range"] for c in cells]
            print(f"| {r} | {cpu.get(r, 0.0):.0f} | {stat.split('_')[0]} | {q:.2f} | {np.mean(fr):.2f} | "
                  f"{np.mean(er):.2f} | {np.max(fr):.1f} | {np.max(er):.1f} |")


def _by_rows(summary: dict, rows: list[str]) -> None:
    print("\n## median |error| %: quoted mean over seeds and fit range, per fit setting (rows:grid rows)")
    print("| held-out device | family | " + " | ".join(f"{r}: mean (fit range)" for r in rows) + " |")
    print("|---|---|" + "---|" * len(rows))
    for held, fams in summary[rows[0]].items():
        for fam in fams:
            if fam in ("moe", "mla"):
                continue
            cells = [summary[r][held][fam]["median_abs_pct_err"] for r in rows]
            print(f"| {held} | {FAMILIES[fam]} | "
                  + " | ".join(f"{c['mean']:.1f} ({c['fit_range']:.1f})" for c in cells) + " |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3], help="subsample seeds (fit and eval)")
    ap.add_argument("--fits", nargs="+", default=DEFAULT_FITS, type=_setting,
                    help="fit settings ROWS:GRID (fit rows per device per family : grid-search rows per device)")
    ap.add_argument("--max-rows-per-table", type=int, default=MAX_ROWS_PER_TABLE)
    ap.add_argument("--no-moe", action="store_true", help="skip the MoE folds (~70 s per seed)")
    ap.add_argument("--no-mla", action="store_true", help="skip the MLA folds")
    ap.add_argument("--json", type=Path, help="write the summary and the whole (rows, s, e, device) grid here")
    args = ap.parse_args(argv)
    measured = measured_dir(ROOT)
    if measured is None:
        print("shared/data/measured not found next to the checkout: nothing to run")
        return 1
    data = measured / "aiconfigurator" / "data"
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:6.0f} s] {msg}", file=sys.stderr, flush=True)

    models, cpu = fit_models(data, args.seeds, args.fits, args.max_rows_per_table, log)
    scores = score_models(data, models, args.seeds, args.max_rows_per_table, log)
    moe = {} if args.no_moe else moe_grid(data, args.seeds, log)
    mla = {} if args.no_mla else mla_folds(data)
    summary = summarise(scores, moe, mla, args.seeds, args.fits)
    print_tables(summary, args.seeds, args.fits, cpu)
    print(f"\n{time.perf_counter() - t0:.0f} s wall, {time.process_time():.0f} s CPU; mla: every row, no seed "
          "(its fit and eval spreads are 0 by construction)")
    if args.json:
        grid = [{"rows": r, "fit_seed": s, "eval_seed": e, "device": d, "report": rep}
                for (r, s, e, d), rep in scores.items()]
        args.json.write_text(json.dumps({"summary": {str(k): v for k, v in summary.items()}, "grid": grid,
                                         "moe": [{"fit_seed": s, "device": d, **v} for (s, d), v in moe.items()],
                                         "mla": mla, "fit_cpu_s": {str(k): v for k, v in cpu.items()}}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
