"""Leave-one-device-out validation of the device-general efficiency model.

For every device folder under DATA (aiconfigurator's `systems/data/<gpu>/` layout), the general model is fitted on
all the other devices and priced on this one through its datasheet only; the errors per table family sit next to the
flat roofline derate's. The same held-out residuals give the uncertainty bands (log-ratio quantiles per family) the
shipped model carries.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from lvlmsim.calibrate import general
from lvlmsim.calibrate.bands import SLIDING_REGIME
from lvlmsim.calibrate.fit import abs_pct_errors, cost_model_times
from lvlmsim.calibrate.general import NOT_FITTED_TABLES, ROWS_PER_DEVICE, GeneralModel, fit_general, group_key
from lvlmsim.calibrate.measured import FAMILIES, TABLES, Measurement, assign_allreduce_algorithm, load_aiconfigurator
from lvlmsim.calibrate.validate import attach_skipped
from lvlmsim.cost.profile import DEFAULT_PROFILE
from lvlmsim.errors import SpecError
from lvlmsim.specs.hardware import HardwareSpec

# a leave-one-out cell of a table whose every (subsampled) row was skipped: it carries only `skipped`
EMPTY_CELL = {"median_abs_pct_err": None, "p90_abs_pct_err": None, "n": 0, "roofline_median_abs_pct_err": None}

# aiconfigurator device folder -> lvlmsim hardware id (hardware_specs/<id>.yaml)
DEVICE_FOLDERS = {
    "a100_sxm": "a100-sxm-80gb",
    "h100_sxm": "h100-sxm",
    "b300_sxm": "b300",
    "rtx_pro_6000_server": "rtx-pro-6000-server",
}
MAX_ROWS_PER_TABLE = 3000  # seeded subsample of every table: the fold fits and the error medians stay fast and stable


def device_folders(data_dir: Path) -> dict[str, Path]:
    """Device folders under `data_dir` that map to a hardware id; a folder with tables but no mapping is an error."""
    root = Path(data_dir)
    if not root.is_dir():
        raise SpecError(f"--data: '{data_dir}' is not a folder; expected aiconfigurator's systems/data/ with one "
                        f"<gpu>/ folder per device ({', '.join(DEVICE_FOLDERS)})")
    found = {p.name: p for p in sorted(root.iterdir()) if p.is_dir()}
    unknown = [n for n in found if n not in DEVICE_FOLDERS]
    known = {n: p for n, p in found.items() if n in DEVICE_FOLDERS}
    if len(known) < 2:
        raise SpecError(f"--data: leave-one-out needs at least two device folders among {', '.join(DEVICE_FOLDERS)} "
                        f"under '{data_dir}'; found {', '.join(found) or 'none'}"
                        + (f" (no hardware id for {', '.join(unknown)})" if unknown else ""))
    return known


def load_devices(data_dir: Path, *, seed: int = 0, max_rows_per_table: int = MAX_ROWS_PER_TABLE,
                 skipped: dict[str, Counter] | None = None) -> dict[str, tuple[HardwareSpec, list[Measurement]]]:
    """folder name -> (hardware spec, rows) for every known device folder under `data_dir`; `skipped`, when given,
    receives folder name -> the loader's {reason: rows skipped} (of the subsample)."""
    from lvlmsim.specs.registry import load_hardware

    out = {}
    for name, path in device_folders(data_dir).items():
        hw = load_hardware(DEVICE_FOLDERS[name])
        loaded = load_aiconfigurator(path, max_rows_per_table=max_rows_per_table, seed=seed)
        out[name] = (hw, assign_allreduce_algorithm(loaded.rows, hw))
        if skipped is not None:
            skipped[name] = loaded.skipped
    return out


def _stats(err: np.ndarray, base: np.ndarray) -> dict:
    return {"median_abs_pct_err": round(float(np.median(err)), 2),
            "p90_abs_pct_err": round(float(np.percentile(err, 90)), 2), "n": int(len(err)),
            "roofline_median_abs_pct_err": round(float(np.median(base)), 2)}


MEDIAN = ("median_abs_pct_err",)  # what a nested selection check scores a table by unless told otherwise


def fold_table_errors(devices: dict[str, tuple[HardwareSpec, list[Measurement]]], train: list[str], held: str,
                      key: str, tables: tuple[str, ...], stats: tuple[str, ...] = MEDIAN) -> dict[str, float]:
    """Median |error| (or the mean of `stats`, e.g. median and p90) per table of `held` (those it has; {} if none):
    the general model's `key` family fitted on the `train` devices' rows of `tables` only: one fold of a nested
    selection check (benchmarks/*_selection.py)."""
    rows = [r for r in devices[held][1] if r.family in tables]
    if not rows:
        return {}
    fit_rows = {devices[n][0].id: (devices[n][0], [r for r in devices[n][1] if r.family in tables]) for n in train}
    report = held_out_report(fit_general(fit_rows, families=[key]), devices[held][0], rows)[0]
    return {t: float(np.mean([report[t][s] for s in stats])) for t in tables if t in report}


def inner_score(devices: dict[str, tuple[HardwareSpec, list[Measurement]]], names: list[str], key: str,
                tables: tuple[str, ...], stats: tuple[str, ...] = MEDIAN) -> float:
    """The inner leave-one-out of a nested selection check: the mean over `names` (the outer fold's training
    devices) of each one's mean median |error| per table (or mean of `stats`), the `key` family fitted on the others
    of `names`. Devices without those tables are skipped. A candidate is picked by the lowest score
    (benchmarks/*_selection.py)."""
    per = [fold_table_errors(devices, [n for n in names if n != held], held, key, tables, stats) for held in names]
    return float(np.mean([np.mean(list(errors.values())) for errors in per if errors]))


def nested_pick(devices: dict[str, tuple[HardwareSpec, list[Measurement]]], names: list[str], key: str,
                tables: tuple[str, ...], candidates: Sequence[str],
                use: Callable[[str], None]) -> tuple[str, dict[str, float]]:
    """One outer fold's pick in a nested selection check: each candidate is installed by `use` and scored by
    `inner_score` over `names`; the lowest score wins (the first listed on a tie) and is left installed."""
    scores = {}
    for candidate in candidates:
        use(candidate)
        scores[candidate] = inner_score(devices, names, key, tables)
    pick = min(scores, key=scores.get)
    use(pick)
    return pick, scores


@contextmanager
def family_setup(key: str, setup: general.FamilySetup) -> Iterator[None]:
    """Within the block the general model fits family `key` as `setup` (a candidate of a selection check); the
    shipped setups are restored after, also on error."""
    saved = general.FAMILY_SETUPS
    general.FAMILY_SETUPS = {**saved, key: setup}
    try:
        yield
    finally:
        general.FAMILY_SETUPS = saved


def held_out_report(model: GeneralModel, hw: HardwareSpec, rows: list[Measurement]) -> tuple[dict, dict]:
    """({table family: stats}, {family key: log(pred/meas) residuals}) of `model` on one device's rows."""
    from lvlmsim.calibrate.kernels import with_kernel_features

    # priced as `auto` prices the device: its kernel generation's behaviour included (FA2 windowed decode re-reads)
    prof = with_kernel_features(model.profile_for(hw), hw)
    report, resid = {}, {}
    fams = [f for f in TABLES if any(r.family == f for r in rows)]
    fams += sorted({r.family for r in rows} - set(fams))
    for fam in fams:
        sel = [r for r in rows if r.family == fam]
        meas = np.array([r.measured_s for r in sel])
        pred = cost_model_times(sel, hw, prof)
        base = cost_model_times(sel, hw, DEFAULT_PROFILE)
        report[fam] = _stats(abs_pct_errors(pred, meas), abs_pct_errors(base, meas))
        keys = np.array([group_key(r) for r in sel])
        regime_of = FAMILIES[fam].regime if fam in FAMILIES else None
        labels = np.array([regime_of(r) if regime_of else "" for r in sel])
        if fam.endswith("_sliding"):  # one regime of their own: size bins are the full-attention kernels'
            labels = np.full(len(sel), SLIDING_REGIME)
        if fam in NOT_FITTED_TABLES:  # reported, but no family's band rests on them
            continue
        for key in sorted(set(keys)):
            resid.setdefault(key, []).extend(np.log(pred[keys == key] / meas[keys == key]).tolist())
            if regime_of is None:
                continue
            for lab in sorted(set(labels[keys == key])):
                sel_k = (keys == key) & (labels == lab)
                resid.setdefault(f"{key}|{lab}", []).extend(np.log(pred[sel_k] / meas[sel_k]).tolist())
    return report, resid


def leave_one_out_devices(devices: dict[str, tuple[HardwareSpec, list[Measurement]]], *, seed: int = 0,
                          rows_per_device: int = ROWS_PER_DEVICE, log: Callable[[str], None] | None = None,
                          solves: list[dict] | None = None) -> tuple[dict, dict]:
    """(report, residuals) over already loaded devices {folder: (spec, rows)}: each held out in turn. `solves`, when
    given, receives how each fold's final joint solve ended: {held, family, iterations, max_iter, at_cap}."""
    t0 = time.perf_counter()
    report: dict[str, dict] = {}
    residuals: dict[str, dict[str, list[float]]] = {}
    for held in devices:
        train = {devices[n][0].id: v for n, v in devices.items() if n != held}
        model = fit_general(train, seed=seed, rows_per_device=rows_per_device)
        if solves is not None:
            solves.extend({"held": held, "family": key, **fam.solver} for key, fam in model.families.items())
        hw, rows = devices[held]
        report[held], residuals[held] = held_out_report(model, hw, rows)
        if log:
            log(f"{held}: fitted on {', '.join(sorted(train))} ({time.perf_counter() - t0:.1f} s)")
    return report, residuals


def strictly_nested_coverage(devices: dict[str, tuple[HardwareSpec, list[Measurement]]],
                             residuals: dict[str, dict[str, list[float]]], *, seed: int = 0,
                             rows_per_device: int = ROWS_PER_DEVICE, log: Callable[[str], None] | None = None,
                             ) -> dict[str, dict[str, dict]]:
    """Per held-out device D and family: coverage of D's leave-one-out `residuals` by bands from an inner
    leave-one-out over the other devices only (each inner model fitted without D and without its own held-out
    device), so nothing behind D's band has seen D's rows. A family present on fewer than two of the other devices
    gets no band there and is left out."""
    from lvlmsim.calibrate.bands import coverage, transfer_bands

    t0 = time.perf_counter()
    out: dict[str, dict[str, dict]] = {}
    for held in devices:
        others = [n for n in devices if n != held]
        inner: dict[str, dict[str, list[float]]] = {}
        for d2 in others:
            model = fit_general({devices[n][0].id: devices[n] for n in others if n != d2}, seed=seed,
                                rows_per_device=rows_per_device)
            _rep, res = held_out_report(model, *devices[d2])
            inner[d2] = {k: v for k, v in res.items() if k.split("|", 1)[0] in model.families}
        cov = coverage(residuals[held], transfer_bands(inner, seed=seed))
        if cov:
            out[held] = cov
        if log:
            log(f"{held}: inner leave-one-out over {', '.join(others)} ({time.perf_counter() - t0:.1f} s)")
    return out


def leave_one_out(data_dir: Path, *, seed: int = 0, rows_per_device: int = ROWS_PER_DEVICE,
                  max_rows_per_table: int = MAX_ROWS_PER_TABLE,
                  log: Callable[[str], None] | None = None) -> tuple[dict, dict, dict]:
    """(report, residuals, info): report[device folder][table family] = stats of the model fitted without it."""
    t0 = time.perf_counter()
    skipped: dict[str, Counter] = {}
    devices = load_devices(data_dir, seed=seed, max_rows_per_table=max_rows_per_table, skipped=skipped)
    t_load = time.perf_counter() - t0
    solves: list[dict] = []
    report, residuals = leave_one_out_devices(devices, seed=seed, rows_per_device=rows_per_device, log=log,
                                              solves=solves)
    moe_folds(data_dir, {n: hw for n, (hw, _rows) in devices.items()}, report, seed=seed)
    for name, counts in skipped.items():  # what the JSON reader would otherwise not learn: rows left out, and why
        attach_skipped(report.setdefault(name, {}), counts, EMPTY_CELL)
    info = {"seconds": round(time.perf_counter() - t0, 1), "load_seconds": round(t_load, 1),
            "solves": [{"seed": seed, **s} for s in solves],
            "rows": {n: len(v[1]) for n, v in devices.items()}, "seed": seed,
            "max_rows_per_table": max_rows_per_table, "rows_per_device_fit": rows_per_device}
    return report, residuals, info


SEED_STATS = ("median_abs_pct_err", "p90_abs_pct_err")  # the statistics a several-seed report gives per seed


def leave_one_out_seeds(data_dir: Path, seeds: Sequence[int], *, rows_per_device: int = ROWS_PER_DEVICE,
                        max_rows_per_table: int = MAX_ROWS_PER_TABLE, log: Callable[[str], None] | None = None,
                        ) -> tuple[dict, list[dict], dict]:
    """(seed_summary of the per-seed reports, per-seed residuals, info): leave_one_out at each subsample seed (both
    the table subsample and the fit's), because one seed's figure moves by more than the targets' margins
    (benchmarks/loo_seed_spread.py)."""
    if not seeds:
        raise SpecError("--seeds: must be >= 1")
    reports, residuals, infos = [], [], []
    for seed in seeds:
        rep, res, info = leave_one_out(data_dir, seed=seed, rows_per_device=rows_per_device,
                                       max_rows_per_table=max_rows_per_table, log=log)
        reports.append(rep)
        residuals.append(res)
        infos.append(info)
    info = {**infos[0], "seeds": list(seeds), "seconds": round(sum(i["seconds"] for i in infos), 1),
            "solves": [s for i in infos for s in i["solves"]]}
    del info["seed"]
    return seed_summary(reports), residuals, info


SOLVES_LISTED = 4  # solve_summary names at most this many solves stopped at the cap


def solve_summary(solves: Sequence[dict]) -> str:
    """One line on how the general model's final joint solves ended (leave_one_out's info['solves'])."""
    if not solves:
        return "no joint solves recorded"
    at_cap = [f"{s['family']} ({s['held']}" + (f", seed {s['seed']})" if "seed" in s else ")")
              for s in solves if s.get("at_cap")]
    most = max(solves, key=lambda s: s.get("iterations", 0))
    text = (f"{len(solves)} joint solves, most iterations {most.get('iterations')} (cap {most.get('max_iter')}), "
            f"{len(at_cap)} stopped at the cap")
    shown = ", ".join(at_cap[:SOLVES_LISTED]) + (f" and {len(at_cap) - SOLVES_LISTED} more"
                                                 if len(at_cap) > SOLVES_LISTED else "")
    return text + (": " + shown if at_cap else "")


def seed_summary(reports: Sequence[dict]) -> dict:
    """One report over several seeds' leave-one-out reports ({device: {family: stats}}): per cell the mean of each
    SEED_STATS entry (under its own name, so a reader of one seed's keys gets the mean), its per-seed values
    (`<stat>_seeds`, in seed order, seeds lacking the cell left out), min and max; `n` of the first seed that has the
    cell and the flat derate's mean median."""
    out: dict[str, dict] = {}
    for dev in dict.fromkeys(d for rep in reports for d in rep):
        for fam in dict.fromkeys(f for rep in reports for f in rep.get(dev, {})):
            cells = [rep[dev][fam] for rep in reports if fam in rep.get(dev, {})]
            if not any(c["n"] for c in cells):  # every row of the table skipped at every seed: only the reasons
                out.setdefault(dev, {})[fam] = dict(cells[0])
                continue
            cells = [c for c in cells if c["n"]]
            entry: dict = {}
            for stat in SEED_STATS:
                vals = [float(c[stat]) for c in cells]
                entry.update({stat: round(float(np.mean(vals)), 2), f"{stat}_seeds": vals,
                              f"{stat}_min": min(vals), f"{stat}_max": max(vals)})
            entry["n"] = cells[0]["n"]
            entry["roofline_median_abs_pct_err"] = round(float(np.mean([c["roofline_median_abs_pct_err"]
                                                                        for c in cells])), 2)
            if "skipped" in cells[0]:
                entry["skipped"] = cells[0]["skipped"]
            out.setdefault(dev, {})[fam] = entry
    return out


def family_errors(residuals: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, float]]:
    """Per family key ('family|regime' keys too), pooled over held-out devices: median/p90 |error| % and n. The
    bands of the same residuals: lvlmsim.calibrate.bands (device offset + row noise, not pooled quantiles)."""
    pooled: dict[str, list[float]] = {}
    for per_key in residuals.values():
        for key, r in per_key.items():
            pooled.setdefault(key, []).extend(r)
    out = {}
    for key, r in sorted(pooled.items()):
        err = np.abs(np.exp(np.asarray(r)) - 1.0) * 100.0
        out[key] = {"median_abs_pct_err": round(float(np.median(err)), 2),
                    "p90_abs_pct_err": round(float(np.percentile(err, 90)), 2), "n": int(len(r))}
    return out


def moe_folds(data_dir: Path, hws: dict[str, HardwareSpec], report: dict, *, seed: int = 0) -> None:
    """The `moe` family of the leave-one-out table: lvlmsim.calibrate.moe.leave_one_device_out, the same folds (same
    FIT_ROWS sample per fitting device) as benchmarks/moe_fit.py and the shipped general/moe.json."""
    from lvlmsim.calibrate.moe import leave_one_device_out, load_moe_table

    loaded = {}
    for name, hw in hws.items():
        if any((Path(data_dir) / name).rglob("moe_perf.csv")):
            data = load_moe_table(Path(data_dir) / name, hw)
            if len(data):
                loaded[name] = (data, hw)
    if len(loaded) < 2:
        return
    for fold in leave_one_device_out(loaded, seed=seed):
        e = fold["report"]
        cell = {k: e[k] for k in ("median_abs_pct_err", "p90_abs_pct_err", "n", "roofline_median_abs_pct_err")}
        report.setdefault(fold["folder"], {})["moe"] = {**cell, "skipped": dict(loaded[fold["folder"]][0].skipped)}
