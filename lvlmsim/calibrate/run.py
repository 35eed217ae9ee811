"""`lvlmsim calibrate`: run the microbenchmark suite, fit a profile, write PROFILE.json and its raw CSV beside it."""

from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from lvlmsim.calibrate.fit import cost_model_times, fit_profile
from lvlmsim.calibrate.measured import Measurement, op_from_row
from lvlmsim.calibrate.model import FittedProfile
from lvlmsim.errors import SpecError
from lvlmsim.specs.hardware import HardwareSpec
from lvlmsim.specs.inputs import number
from lvlmsim.specs.registry import load_hardware

CSV_FIELDS = ("family", "kind", "tag", "dtype", "shape", "flops", "bytes", "measured_s", "p10_s", "p90_s", "reps",
              "copies", "split", "predicted_s", "source")

# device names (substring, lower case) -> hardware ids whose datasheet a CUDA run is relative to
CUDA_NAMES = (("h100 pcie", "h100-pcie"), ("h100", "h100-sxm"), ("h200", "h200-sxm"), ("a100-pcie", "a100-pcie-40gb"),
              ("a100", "a100-sxm-80gb"), ("l40s", "l40s"), ("l4", "l4"), ("a10g", "a10g"), ("4090", "rtx-4090"),
              ("b200", "b200"))


def default_hardware_id(device: str, device_name: str | None = None) -> str:
    """cpu -> cpu-generic; cuda -> the registry id whose name matches the GPU (else the user must pass --hardware)."""
    if device == "cpu":
        return "cpu-generic"
    name = (device_name or "").lower()
    for key, hw_id in CUDA_NAMES:
        if key in name:
            return hw_id
    raise SpecError(f"--hardware: cannot tell which hardware spec '{device_name}' is; pass --hardware ID "
                    f"(an id from `lvlmsim list hardware` or a YAML path)")


def write_measurements_csv(path: Path, rows: Sequence[Measurement], *, holdout: Sequence[bool],
                           predicted_s: Sequence[float], extra: Sequence[dict] | None = None) -> Path:
    """The raw measurements, one row per kernel, with the fit/holdout split and the fitted model's prediction."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        w.writeheader()
        for i, m in enumerate(rows):
            e = extra[i] if extra else {}
            w.writerow({
                "family": m.family, "kind": m.op.kind, "tag": m.tag, "dtype": m.op.dtype,
                "shape": " ".join(f"{x:g}" if isinstance(x, float) else str(x) for x in m.op.shape),
                "flops": f"{m.op.flops:.6g}", "bytes": f"{m.op.bytes:.6g}", "measured_s": f"{m.measured_s:.6g}",
                "p10_s": f"{e['p10_s']:.6g}" if "p10_s" in e else "",
                "p90_s": f"{e['p90_s']:.6g}" if "p90_s" in e else "",
                "reps": e.get("reps", ""), "copies": e.get("copies", ""),
                "split": "holdout" if holdout[i] else "fit", "predicted_s": f"{predicted_s[i]:.6g}", "source": m.source,
            })
    return path


def read_measurements_csv(path: str | Path) -> tuple[list[Measurement], np.ndarray]:
    """Rows of a calibration CSV rebuilt into Measurements (Ops via the graph builders), and the holdout mask."""
    path = Path(path)
    try:
        fh = path.open(newline="")
    except OSError as exc:
        raise SpecError(f"measurements: cannot read {path} ({exc.strerror})") from None
    rows: list[Measurement] = []
    hold: list[bool] = []
    with fh:
        for i, r in enumerate(csv.DictReader(fh)):
            try:
                shape = tuple(float(x) for x in r["shape"].split())
                op = op_from_row(r["kind"], shape, r["dtype"], r["tag"])
                src = r.get("source") or str(path)
                rows.append(Measurement(op, float(r["measured_s"]), r["family"], src, r["tag"]))
                hold.append(r["split"] == "holdout")
            except (KeyError, ValueError) as exc:
                raise SpecError(f"{path}: row {i + 2}: {exc}") from None
    return rows, np.array(hold, dtype=bool)


def calibrate(device: str = "cpu", out: str | Path = "profile.json", *, quick: bool = False,
              hardware: str | HardwareSpec | None = None, threads: int | None = None, seed: int = 0,
              name: str | None = None, log: Callable[[str], None] | None = None) -> FittedProfile:
    """Benchmark `device`, fit a profile relative to `hardware`'s datasheet, save PROFILE.json + PROFILE.csv."""
    from lvlmsim.calibrate import bench

    if device not in bench.DEVICES:
        raise SpecError(f"--device: '{device}' is not one of {', '.join(bench.DEVICES)}")
    out = Path(out)
    if out.suffix.lower() != ".json":
        raise SpecError(f"--out: '{out}' must be a .json path (the raw CSV is written beside it)")
    # checked before the suite: a bad seed failed the fit after minutes of timing; torch overflowed on the threads
    number(seed, "--seed", lo=0, hi=2**63 - 1, integer=True)
    if threads is not None:
        cpus = os.cpu_count() or 1
        number(threads, f"--threads (this machine has {cpus} CPUs; more only adds contention to the timings)", lo=1,
               hi=cpus, integer=True)
    t0 = time.perf_counter()
    if hardware is None:
        dev_name = None
        if device == "cuda":
            torch = bench._import_torch()
            if not torch.cuda.is_available():  # read "cannot tell which hardware spec 'None' is; pass --hardware"
                raise SpecError("--device: 'cuda' requested but torch sees no CUDA device (allowed: cpu, cuda)")
            dev_name = torch.cuda.get_device_name(0)
        hardware = default_hardware_id(device, dev_name)
    hw = load_hardware(hardware)
    res = bench.run_suite(device, quick=quick, hardware_id=hw.id, log=log, threads=threads)
    rows = [r.measurement() for r in res.rows]
    extra = [{"p10_s": r.timing.p10_s, "p90_s": r.timing.p90_s, "reps": r.timing.reps, "copies": r.timing.copies}
             for r in res.rows]
    if device == "cuda":
        import torch

        n_gpu = torch.cuda.device_count()
        if n_gpu > 1:
            ar = bench.bench_allreduce(n_gpu, quick=quick)
            rows += ar
            extra += [{} for _ in ar]
    if log:
        log(f"measured {len(rows)} kernels in {res.wall_s:.1f} s; fitting ...")
    t_fit = time.perf_counter()
    csv_path = out.with_suffix(".csv")
    meta = {
        "created": res.environment["date"],
        "description": f"fitted from {len(rows)} microbenchmarks on {res.environment['device_name']} "
                       f"({res.environment['dtype']}), relative to the '{hw.id}' datasheet",
        "environment": res.environment,
        "microbenchmark": {k: (round(v, 9) if isinstance(v, float) else v) for k, v in res.extras.items()},
        "measurements_csv": csv_path.name,
        "timing_regime": "eager",
        "provenance": {"source": "lvlmsim calibrate microbenchmark suite (lvlmsim/calibrate/bench.py)",
                       "quick": quick},
    }
    profile, mask = fit_profile(rows, hw, name=name or hw.id, seed=seed, starts=2 if quick else 4,
                                max_iter=80 if quick else None, aliases={"conv": "gemm"}, meta=meta, log=log)
    dropped = drop_worse_than_default(profile, log)
    if dropped:
        profile.meta["dropped_families"] = dropped
    profile.meta["timing_s"] = {"benchmark": round(res.wall_s, 2), "fit": round(time.perf_counter() - t_fit, 2),
                                "total": round(time.perf_counter() - t0, 2)}
    pred = cost_model_times(rows, hw, profile)
    write_measurements_csv(csv_path, rows, holdout=mask, predicted_s=pred, extra=extra)
    profile.save(out)
    if log:
        log(f"wrote {out} and {csv_path} in {time.perf_counter() - t0:.1f} s")
    return profile


def drop_worse_than_default(profile: FittedProfile, log=None) -> dict[str, str]:
    """Remove every family whose fit predicts its own held-out rows worse than the flat roofline default does (a
    noisy run - a neighbour process stealing the core - can fit a curve to the noise); those ops then use the
    default, and the profile says so. Returns {family: why}."""
    dropped = {}
    for key, fam in list(profile.families.items()):
        mine, flat = fam.holdout_median_abs_pct_err, fam.roofline_default_holdout_median_abs_pct_err
        if mine is not None and flat is not None and mine > flat:
            dropped[key] = f"held-out median error {mine}% > the flat default's {flat}%: kept the default"
            del profile.families[key]
            if log:
                log(f"{key}: {dropped[key]} (noisy timings? re-run with --threads 1 on an idle machine)")
    profile.aliases = {k: v for k, v in profile.aliases.items() if v in profile.families}
    profile._resolved.clear()
    return dropped


def profile_summary(profile: FittedProfile) -> list[dict]:
    """One line per family for printing: key, rows, held-out median/p90, roofline default median."""
    return [{"family": k, "n_fit": f.n_fit, "n_holdout": f.n_holdout,
             "holdout_median_abs_pct_err": f.holdout_median_abs_pct_err,
             "holdout_p90_abs_pct_err": f.holdout_p90_abs_pct_err,
             "roofline_default_median_abs_pct_err": f.roofline_default_holdout_median_abs_pct_err}
            for k, f in profile.families.items()]


def dumps(obj) -> str:
    return json.dumps(obj, indent=2)
