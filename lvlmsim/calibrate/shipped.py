"""How the shipped GPU profile is built from public measured data (which is never copied into the project).

calibration/profiles/h100-sxm.json = fit on a seeded random half of every H100 row of NVIDIA aiconfigurator's tables
(GEMM bf16/fp8, context/generation/encoder attention, NCCL all-reduce, vLLM's custom all-reduce under CUDA graphs)
and, for elementwise ops, Vidur's H100 mlp.csv
(norms, activation, residual add, RoPE, embedding); the other half is held out and its median |error| is what the
profile reports. `benchmarks/calibration_report.py --write-profile` re-creates it.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from lvlmsim.calibrate.bands import SLIDING_REGIME, nested_coverage
from lvlmsim.calibrate.fit import fit_profile
from lvlmsim.calibrate.general import ROWS_PER_DEVICE
from lvlmsim.calibrate.measured import (
    LoadResult,
    Measurement,
    assign_allreduce_algorithm,
    load_aiconfigurator,
    load_vidur_dir,
)
from lvlmsim.calibrate.model import FittedProfile
from lvlmsim.specs.hardware import HardwareSpec

# snapshot commits, from shared/data/measured/README.md
SOURCES = {
    "aiconfigurator": {"repo": "github.com/ai-dynamo/aiconfigurator",
                       "commit": "095f58a51c4ca8e61b66ec108d86f223f8d559ce", "license": "Apache-2.0",
                       "path": "aic-core/src/aiconfigurator_core/systems/data/<gpu>/ (parquet, read as CSV)"},
    "vidur": {"repo": "github.com/microsoft/vidur", "commit": "7d47513363ec447a741ac5e47241580b47724fbf",
              "license": "MIT", "path": "data/profiling/compute/<gpu>/<model>/mlp.csv"},
}
GPU_DIRS = {"h100-sxm": ("h100_sxm", "h100"), "a100-sxm-80gb": ("a100_sxm", "a100")}


def measured_dir(repo_root: str | Path | None = None) -> Path | None:
    """shared/data/measured next to the checkout (../shared); None when absent (it never ships to users)."""
    root = Path(repo_root) if repo_root else Path(__file__).resolve().parents[2]
    cand = root.parent / "shared" / "data" / "measured"
    return cand if (cand / "aiconfigurator" / "data").is_dir() else None


def gpu_rows(measured: Path, hardware_id: str, with_vidur: bool = True) -> LoadResult:
    """Every measured row of one GPU: aiconfigurator tables, plus Vidur's elementwise ops (its GEMMs are a check).
    Custom all-reduce rows are settled by vLLM's policy on the device (assign_allreduce_algorithm), as validate and
    the general model do: unsettled, their op is priced as NCCL's and the fit puts them in the NCCL family."""
    from lvlmsim.specs.registry import load_hardware

    aic, vid = GPU_DIRS[hardware_id]
    res = load_aiconfigurator(measured / "aiconfigurator" / "data" / aic)
    res.files = [f"aiconfigurator/data/{aic}/{f}" for f in res.files]
    res.rows = assign_allreduce_algorithm(list(res.rows), load_hardware(hardware_id))
    if with_vidur and (measured / "vidur" / "data" / "profiling").is_dir():
        v = load_vidur_dir(measured / "vidur" / "data" / "profiling", vid)
        v.rows = [r for r in v.rows if r.family == "elementwise"]
        v.files = [f"vidur/data/profiling/{f}" for f in v.files]
        res.extend(v)
    return res


def build_gpu_profile(measured: Path, hw: HardwareSpec, *, seed: int = 0, max_fit_rows: int = 20000,
                      log=None) -> tuple[FittedProfile, LoadResult, object]:
    """Fit the shipped profile of `hw` from the measured data; returns (profile, rows, holdout mask)."""
    t0 = time.perf_counter()
    res = gpu_rows(measured, hw.id)
    held = [r for r in res.rows if r.family.endswith("_sliding")]  # windowed kernels: a held-out check in validate
    if held:
        res.rows = [r for r in res.rows if not r.family.endswith("_sliding")]
        res.skipped["sliding-window attention rows: kept out of the fit, validated as unseen kernels"] += len(held)
    notes = {
        "gemm": "aiconfigurator bf16 GEMMs (torch.nn.functional.linear, vLLM 0.24, and torch_flow, TRT-LLM 1.3), "
                "CUDA-graph replay, 6 rotated weight copies",
        "gemm.fp8": "aiconfigurator per-tensor fp8 CUTLASS GEMMs (vLLM 0.24), priced against the fp8 peak",
        "attn_prefill": "aiconfigurator context attention (FA3/FA4, causal from an empty cache, incl. KV write); "
                        "sliding-window rows skipped",
        "attn_decode": "aiconfigurator generation attention (FA3/FA4; reads step+1 KV entries); sliding-window rows "
                       "skipped",
        "attn_encoder": "aiconfigurator ViT encoder attention (FA3, head_dim 64/72/80, non-causal)",
        "allreduce": "aiconfigurator nccl-tests all_reduce (half and int8), 2/4/8 GPUs on NVSwitch",
        "allreduce/custom": "aiconfigurator vLLM 0.24 custom all-reduce (bf16, CUDA-graph replay), 2/4/8 GPUs on "
                            "NVSwitch, messages below the custom kernel's buffer",
        "elementwise": "Vidur mlp.csv norms/activation/add/RoPE/embedding, fp16, GPU kernel time from the torch "
                       "profiler (no launch overhead)",
    }
    meta = {
        "created": time.strftime("%Y-%m-%d", time.gmtime()),
        "description": f"fitted from public measured kernel timings of {hw.name}, relative to the '{hw.id}' datasheet",
        "provenance": {"sources": SOURCES, "files": res.files,
                       "skipped_rows": dict(res.skipped), "rows": len(res.rows),
                       "raw_data": "not copied into the project; see calibration/README.md"},
        "timing_regime": "cuda_graph",
        "aliases_note": "conv (patch embedding) has no measured GPU data and uses the gemm fit (it is a GEMM)",
    }
    prof, mask = fit_profile(res.rows, hw, name=hw.id, seed=seed, max_fit_rows=max_fit_rows,
                             aliases={"conv": "gemm"}, meta=meta, notes=notes, log=log)
    prof.meta["fit_seconds"] = round(time.perf_counter() - t0, 1)
    return prof, res, mask


def attach_holdout_bands(prof: FittedProfile, rows: list[Measurement], hw: HardwareSpec) -> list[str]:
    """Give each family of a profile fitted before fits stored bands its p10/p90 of measured / predicted on its
    held-out rows: the same seeded split fit_profile made (meta['split']), checked by the stored held-out count.
    Parameters are untouched. Returns the families left as they were (count mismatch or too few rows)."""
    from lvlmsim.calibrate.bands import ratio_band
    from lvlmsim.calibrate.fit import MIN_BAND_ROWS, cost_model_times, group_key, split_indices

    split = prof.meta.get("split") or {}
    seed, fraction = int(split.get("seed", 0)), float(split.get("holdout_fraction", 0.5))
    groups: dict[str, list[Measurement]] = {}
    for r in rows:
        groups.setdefault(group_key(r), []).append(r)
    left = []
    for key, fam in prof.families.items():
        sub = groups.get(key, [])
        _fit, hold = split_indices(len(sub), seed, fraction)
        if len(hold) != fam.n_holdout or len(hold) < MIN_BAND_ROWS:
            left.append(key)
            continue
        held = [sub[i] for i in hold]
        pred = cost_model_times(held, hw, prof)
        fam.band_p10_ratio, fam.band_p90_ratio = ratio_band(np.log(pred / np.array([r.measured_s for r in held])))
    prof._resolved.clear()
    return left


# aiconfigurator device folders the general model is fitted on, with Vidur's folder for their elementwise ops
GENERAL_DEVICES = {"a100_sxm": ("a100-sxm-80gb", "a100"), "h100_sxm": ("h100-sxm", "h100"), "b300_sxm": ("b300", None),
                   "rtx_pro_6000_server": ("rtx-pro-6000-server", None)}


def general_rows(measured: Path, *, seed: int = 0, max_rows_per_table: int | None = None):
    """{device folder: (spec, rows)}: aiconfigurator tables (seeded subsample per table) + Vidur elementwise ops."""
    from lvlmsim.calibrate.loo import MAX_ROWS_PER_TABLE
    from lvlmsim.specs.registry import load_hardware

    cap = max_rows_per_table or MAX_ROWS_PER_TABLE
    out, files = {}, []
    for folder, (hw_id, vidur) in GENERAL_DEVICES.items():
        path = measured / "aiconfigurator" / "data" / folder
        if not path.is_dir():
            continue
        res = load_aiconfigurator(path, max_rows_per_table=cap, seed=seed)
        files += [f"aiconfigurator/data/{folder}/{f}" for f in res.files]
        hw = load_hardware(hw_id)
        rows = assign_allreduce_algorithm(list(res.rows), hw)
        if vidur and (measured / "vidur" / "data" / "profiling").is_dir():
            v = load_vidur_dir(measured / "vidur" / "data" / "profiling", vidur)
            rows += [r for r in v.rows if r.family == "elementwise"]
            files += [f"vidur/data/profiling/{f}" for f in v.files]
        out[folder] = (hw, rows)
    return out, files


BANDS_NOTE = ("p10/p90 of measured/predicted (lvlmsim.calibrate.bands): on a device the model was not fitted on, a "
              "device offset drawn around the held-out devices' mean offset shrunk toward no bias (hierarchical: "
              "Student t, between-device variance and bias variance pooled over families) plus their rows' scatter "
              "around their own offsets; on a fitted device, its "
              "in-sample residual quantiles; per family and size regime. band_coverage_unseen: share of each "
              "held-out device's rows inside the band derived without that device's residuals")


def attach_bands(model, residuals: dict, in_sample: dict, *, seed: int = 0) -> None:
    """Store on each family of `model` its transfer band (family and regimes, from the held-out `residuals`) and the
    in-sample band of every device it was fitted on (`in_sample`: hardware id -> residuals of the final model)."""
    from lvlmsim.calibrate.bands import measured_bands, transfer_bands

    transfer = transfer_bands(residuals, seed=seed)
    own = {hw_id: measured_bands(r) for hw_id, r in in_sample.items()}

    def pack(bands: dict, key: str) -> dict:
        out: dict = {}
        if key in bands:
            out["p10_ratio"], out["p90_ratio"] = bands[key]
        regimes = {k.split("|", 1)[1]: list(v) for k, v in bands.items() if k.startswith(f"{key}|")}
        return {**out, **({"regimes": regimes} if regimes else {})}

    for key, fam in model.families.items():
        n = sum(len(pk.get(key, [])) for pk in residuals.values())
        band = pack(transfer, key)
        band["n_held_out"] = n
        measured = {hw_id: pack(b, key) for hw_id, b in sorted(own.items()) if hw_id in fam.devices and key in b}
        if measured:
            band["measured"] = measured
        fam.band = band if "p10_ratio" in band or measured else {}


def build_general_model(measured: Path, *, seed: int = 0, rows_per_device: int = ROWS_PER_DEVICE, log=None,
                        strict_coverage: bool = False):
    """Fit the shipped device-general model on every measured device and attach its leave-one-device-out errors and
    bands; returns (model, loo report by device folder). `strict_coverage` adds meta['band_coverage_strict']
    (lvlmsim.calibrate.loo.strictly_nested_coverage: twelve more fits)."""
    from lvlmsim.calibrate.general import fit_general
    from lvlmsim.calibrate.loo import (
        family_errors,
        held_out_report,
        leave_one_out_devices,
        strictly_nested_coverage,
    )

    t0 = time.perf_counter()
    devices, files = general_rows(measured, seed=seed)
    report, residuals = leave_one_out_devices(devices, seed=seed, rows_per_device=rows_per_device, log=log)
    errors = family_errors(residuals)
    model = fit_general({hw.id: (hw, rows) for hw, rows in devices.values()}, name="general-gpu", seed=seed,
                        rows_per_device=rows_per_device)
    in_sample = {hw.id: held_out_report(model, hw, rows)[1] for hw, rows in devices.values()}
    for key, fam in model.families.items():
        e = errors.get(key)
        if e is None:  # measured on one device only: no transfer figure exists
            continue
        fam.expected_error_pct, fam.expected_p90_pct = e["median_abs_pct_err"], e["p90_abs_pct_err"]
        fam.regime_errors = {k.split("|", 1)[1]: v["median_abs_pct_err"] for k, v in errors.items()
                             if k.startswith(f"{key}|") and v["n"] >= 20 and not k.endswith(f"|{SLIDING_REGIME}")}
    attach_bands(model, residuals, in_sample, seed=seed)
    model.meta.update({
        "created": time.strftime("%Y-%m-%d", time.gmtime()),
        "description": "device-general GPU efficiency model: per family, form parameters as intercepts plus linked "
                       "datasheet features, fitted jointly on every measured device",
        "timing_regime": "cuda_graph",
        "provenance": {"sources": SOURCES, "files": files, "devices": {f: hw.id for f, (hw, _r) in devices.items()},
                       "rows_per_table": "seeded random subsample (lvlmsim.calibrate.loo.MAX_ROWS_PER_TABLE)",
                       "raw_data": "not copied into the project; see calibration/README.md"},
        "fit": {"seed": seed, "rows_per_device": rows_per_device},
        "expected_error": "leave-one-device-out: each device's rows priced by the model fitted on the others; "
                          "median/p90 |error| pooled over held-out devices",
        "bands": BANDS_NOTE,
        "leave_one_out": report,
        "band_coverage_unseen": nested_coverage(residuals, seed=seed),
        **({"band_coverage_strict": strictly_nested_coverage(devices, residuals, seed=seed,
                                                             rows_per_device=rows_per_device, log=log)}
           if strict_coverage else {}),
        "fit_seconds": round(time.perf_counter() - t0, 1),
    })
    return model, report
