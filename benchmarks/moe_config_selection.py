"""Choose whether the MoE model prices vLLM's default Triton config (lvlmsim.calibrate.moe.TRITON_CONFIGS) by a
leave-one-device-out nested in each outer fold.

    python benchmarks/moe_config_selection.py [--data ../shared/data/measured/aiconfigurator/data] [--fit-rows 3000]

Three candidates: 'off' (every row on TILE_M tiles at the fitted efficiencies: the model before issue 12 round 4),
'on' (a Triton row with no tuned vLLM config for its (local experts, expert width per GPU, GPU, dtype),
calibration/vllm_fused_moe_configs.yaml, pads to the default config's M tile and runs its GEMMs at `triton_default`
times the fitted efficiencies, one extra parameter shared by all devices) and 'factor' (the same parameter, rows kept
on TILE_M tiles). For each held-out device each candidate
is scored by an inner leave-one-device-out over the three training devices only (fit on two, median |error| on the
third, averaged); the better one is refitted on the three and reported on the held-out device, which never takes
part in its own choice. Also prints every candidate's plain outer figures, the held-out median log(measured /
predicted) per token range and vLLM config of the Triton devices, and (--by-kernel) each held-out device's every-kernel
rows per kernel_source. Result (issue 12 round 4, docs/moe.md): the A100 fold picks 'on' (24.9% held out against
17.2% for 'off'), the other three 'off'; 'off' ships.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from moe_nested import device_hardware, moe_parser  # noqa: E402

from lvlmsim.calibrate.loo import DEVICE_FOLDERS  # noqa: E402
from lvlmsim.calibrate.moe import fit_moe, load_moe_table, predict, sample  # noqa: E402

DEVICES = DEVICE_FOLDERS  # aiconfigurator device folder -> hardware id, one place: lvlmsim.calibrate.loo
# candidate -> (default-config rows on the default's M tile, fit TRITON_DEFAULT_PARAM)
CANDIDATES = {"off": (False, False), "on": (True, True), "factor": (False, True)}
TOKEN_EDGES = (16, 256, 1024, 4096)
TOKEN_LABELS = ("1-16", "17-256", "257-1024", "1025-4096", ">4096")


def abs_err_pct(params, data, hw) -> np.ndarray:
    return np.abs(predict(params, data, hw) / data.measured_s - 1.0) * 100.0


def fit_on(tables: dict, names: list[str], cand: str, hws: dict, args) -> list[float]:
    return fit_moe([(sample(tables[(g, cand)], args.fit_rows, args.seed), hws[g]) for g in names],
                   triton_default=CANDIDATES[cand][1])


def triton_breakdown(held: str, cand: str, params, tables: dict, hws: dict) -> None:
    """Median log(measured / predicted) of the held-out device's Triton rows by default/tuned config and token range."""
    data = tables[(held, cand)]
    tri = data.kernel == "triton"
    if not tri.any():
        return
    ratio = np.log(data.measured_s / predict(params, data, hws[held]))
    bins = np.digitize(data.tokens, TOKEN_EDGES, right=True)
    for flag, name in ((True, "default"), (False, "tuned")):
        sel = tri & (data.triton_default == flag)
        cells = [f"{np.median(ratio[sel & (bins == b)]):+.2f}" if (sel & (bins == b)).any() else "   -"
                 for b in range(len(TOKEN_LABELS))]
        print(f"    {hws[held].id:<22}{cand:<8}{name:<9}{int(sel.sum()):>6}  " + "  ".join(f"{c:>6}" for c in cells))


def by_kernel_source(outer: dict, hws: dict, args) -> None:
    """Each held-out device's every-kernel rows per kernel_source, under each candidate's outer fit."""
    print(f"\n{'held out':<22}{'kernel_source':<64}{'n':>7}" + "".join(f"{c + ' med/p90':>16}" for c in CANDIDATES))
    for held, fits in outer.items():
        every = {tiles: load_moe_table(Path(args.data) / held, hws[held], every_kernel=True, default_tiles=tiles)
                 for tiles in (False, True)}
        errs = {c: abs_err_pct(fits[c], every[tiles], hws[held]) for c, (tiles, _) in CANDIDATES.items()}
        source = every[False].source
        for src in sorted(set(source)):
            sel = source == src
            cells = "".join(f"{f'{np.median(e[sel]):.1f} / {np.percentile(e[sel], 90):.1f}':>16}"
                            for e in errs.values())
            print(f"{hws[held].id:<22}{src[:63]:<64}{int(sel.sum()):>7}{cells}")


def main() -> None:
    ap = moe_parser(__doc__)
    ap.add_argument("--by-kernel", action="store_true", help="also score every kernel's rows per kernel_source")
    args = ap.parse_args()
    t0 = time.perf_counter()
    hws = device_hardware()
    loaded = {(g, tiles): load_moe_table(Path(args.data) / g, hws[g], default_tiles=tiles)
              for g in DEVICES for tiles in (False, True)}
    tables = {(g, c): loaded[(g, tiles)] for g in DEVICES for c, (tiles, _) in CANDIDATES.items()}
    print(f"loaded {len(loaded)} tables in {time.perf_counter() - t0:.0f} s")
    print(f"\n{'held out':<22}" + "".join(f"{'inner ' + c:>13}" for c in CANDIDATES) + f"{'chosen':>8}"
          f"{'median %':>10}{'p90 %':>8}" + "".join(f"{'outer ' + c + ' med/p90':>22}" for c in CANDIDATES)
          + f"{'triton_default on/factor':>26}")
    outer = {}
    for held in DEVICES:
        train = [g for g in DEVICES if g != held]
        scores = {}
        for cand in CANDIDATES:
            inner = [float(np.median(abs_err_pct(fit_on(tables, [g for g in train if g != val], cand, hws, args),
                                                 tables[(val, cand)], hws[val]))) for val in train]
            scores[cand] = float(np.mean(inner))
        outer[held] = {c: fit_on(tables, train, c, hws, args) for c in CANDIDATES}
        errs = {c: abs_err_pct(outer[held][c], tables[(held, c)], hws[held]) for c in CANDIDATES}
        best = min(scores, key=scores.get)
        cells = {c: f"{np.median(errs[c]):.1f} / {np.percentile(errs[c], 90):.1f}" for c in CANDIDATES}
        print(f"{hws[held].id:<22}" + "".join(f"{scores[c]:>13.2f}" for c in CANDIDATES) + f"{best:>8}"
              f"{np.median(errs[best]):>10.1f}{np.percentile(errs[best], 90):>8.1f}"
              + "".join(f"{cells[c]:>22}" for c in CANDIDATES)
              + f"{outer[held]['on'][-1]:>17.3f} / {outer[held]['factor'][-1]:.3f}", flush=True)
    print(f"({time.perf_counter() - t0:.0f} s; inner scores: mean over the training devices of the median |error| "
          "of a fit on the other two)")
    print("\nTriton rows held out, median log(measured / predicted) per token range "
          f"({' / '.join(TOKEN_LABELS)}):")
    for held in DEVICES:
        for cand in CANDIDATES:
            triton_breakdown(held, cand, outer[held][cand], tables, hws)
    if args.by_kernel:
        by_kernel_source(outer, hws, args)


if __name__ == "__main__":
    main()
