"""Choose whether the MoE model bounds vLLM's default Triton tiles by their shared-memory operand traffic
(lvlmsim.calibrate.moe.SMEM_MODES, `default_smem_ratio`) by a leave-one-device-out nested in each outer fold.

    python benchmarks/moe_smem_selection.py [--data ../shared/data/measured/aiconfigurator/data] [--fit-rows 3000]

The ratio is an architecture fact, not fitted: per compute capability (calibration/vllm_fused_moe_configs.yaml
mma_operand_path) the shared-memory bytes a default tile moves per K step (operands copied in, and read out by
ldmatrix per warp for mma.sync below sm_90 or by wgmma per warp group on sm_90) at the SM's 128 bytes per clock,
over the tile's FLOPs at the SM's dense tensor rate. It is printed per device and default config BEFORE any fit.
Candidates (criterion fixed before any run: the mean over the three training devices of the median |error| of a
fit on the other two, lowest wins; the held-out device never takes part in its own choice):

- off: the shipped model (every row on TILE_M tiles, no shared-memory bound);
- tiles: default-config rows padded to the default's M tile, no bound (round 4's 'on' without its fitted factor);
- mult: default tiles, and a default-config row's GEMM compute time times max(1, ratio);
- max: default tiles, and the ratio as a second ceiling (the traffic at the full shared-memory bandwidth);
- mult014: 'mult' for the vLLM 0.14 collector's rows only (LEGACY_SOURCES: A100's table), whose get_default_config
  is the 64 x 64 x 32 rule above; vLLM 0.24 (H100's table) runs the batch-aware defaults of vllm-project/vllm#34846
  (first released in v0.17.0; its rule is not in the search index), so its default rows keep the plain model. In a
  fold whose training devices hold no vLLM 0.14 rows it equals 'off', and a tie goes to 'off';
- share014: no shared-memory count; the vLLM 0.14 default-config rows on the default's M tile at `moe.tile_share` of
  the default's M x N tile (64 x 64: 0.5; 16 x 32: 0.17), the rule main prices H100's untuned FlashInfer tile with
  (round 7). Added after the first runs of this script (their tables were seen), so reference only unless nested
  picks it; like mult014 it ties 'off' in A100's fold.

Prints the predicted ratios, the inner scores and choice per fold, every candidate's outer figures (reference only:
choosing from them would leak) and the held-out median log(measured / predicted) of the Triton devices' rows per
vLLM config and token range under each candidate. About 10 min.
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
from lvlmsim.calibrate.moe import (  # noqa: E402
    LEGACY_SOURCES,
    MoEData,
    _triton_listing,
    default_smem_ratio,
    fit_moe,
    load_moe_table,
    predict,
    sample,
    tile_share,
    tile_smem_bytes,
)

DEVICES = DEVICE_FOLDERS  # aiconfigurator device folder -> hardware id, one place: lvlmsim.calibrate.loo
CANDIDATES = {"off": (False, "off"), "tiles": (True, "off"), "mult": (True, "mult"), "max": (True, "max"),
              "mult014": ("v014", "mult"), "share014": ("s014", "off")}
TOKEN_EDGES = (16, 256, 1024, 4096)
TOKEN_LABELS = ("1-16", "17-256", "257-1024", "1025-4096", ">4096")


def abs_err_pct(params, data, hw, smem: str) -> np.ndarray:
    return np.abs(predict(params, data, hw, smem=smem) / data.measured_s - 1.0) * 100.0


def fit_on(tables, hws, names, cand: str, fit_rows: int, seed: int) -> list[float]:
    tiles, smem = CANDIDATES[cand]
    return fit_moe([(sample(tables[(g, tiles)], fit_rows, seed), hws[g]) for g in names], smem=smem)


def print_predicted_ratios(hws) -> None:
    """The architecture's prediction, before any fit: shared-memory time over tensor time of each default tile."""
    print("predicted shared-memory / tensor time of vLLM's default Triton tiles (no fit):")
    for g in ("a100_sxm", "h100_sxm"):
        hw = hws[g]
        cells = [f"{label} {default_smem_ratio(hw.compute_capability, tok, 128, dt):.2f}"
                 for label, tok, dt in (("bf16 M<=E 16x32x64", 64, "bfloat16"), ("bf16 M>E 64x64x32", 8192, "bfloat16"),
                                        ("block fp8 64x128x128", 8192, "fp8_block"))
                 if dt == "bfloat16" or hw.supports("fp8")]
        print(f"  {hw.id:<16} sm_{hw.compute_capability}: " + ", ".join(cells))
    # cuBLAS's sm80 bf16 kernels (the A100 GEMM table's torch.matmul) tile 128 x 128 or 256 x 128 with 64 x 64 warp
    # tiles (CUTLASS-style ampere_bf16_s16816gemm_* names); the same count, mma.sync path, 2048 FLOP / 128 B per clock
    dense = ((128, 128, 32, 4), (256, 128, 32, 8))
    ratios = [2048 * tile_smem_bytes((m, n, k), w, 2.0, "mma_sync") / (2 * m * n * k) / 128 for m, n, k, w in dense]
    cells = [f"{m}x{n}x{k} {w} warps {r:.2f}" for (m, n, k, w), r in zip(dense, ratios, strict=True)]
    print("  dense cuBLAS-class sm80 tiles (not Triton; for comparison): " + ", ".join(cells))


def achieved_fraction(tables, hws) -> None:
    """Measured FLOP rate of the compute-bound Triton bf16 rows (>= 8192 tokens, >= 256 rows per expert): the GEMM
    FLOPs of the real rows over the whole layer's time, as a fraction of the datasheet bf16 peak. A shared-memory
    bound of ratio r caps it at 1 / r, whatever the efficiency model. (A100's vLLM 0.14 rows ran the 64 x 64 x 32
    default; H100's vLLM 0.24 rows ran vllm-project/vllm#34846's defaults, whose tiles are not known here.)"""
    print("\nachieved fraction of bf16 peak, compute-bound Triton bf16 rows (p10 / median / p90 / max) vs 1 / ratio:")
    for g in ("a100_sxm", "h100_sxm"):
        d, hw = tables[(g, False)], hws[g]
        frac = (d.flops_up + d.flops_down) / d.measured_s / hw.peak_flops("bf16")
        big = ((d.kernel == "triton") & (d.table_dtype == "bfloat16") & (d.tokens >= 8192)
               & (d.pairs / np.maximum(d.touched, 1) >= 256))
        for flag, name in ((True, "default config"), (False, "tuned")):
            sel = big & (d.triton_default == flag)
            if sel.any():
                q = np.percentile(frac[sel], [10, 50, 90, 100])
                ratio = default_smem_ratio(hw.compute_capability, 8192, 1, "bfloat16")
                cap = f"   cap of a 64x64x32 tile {1 / ratio:.2f}" if flag else ""
                print(f"  {hw.id:<16}{name:<18}{int(sel.sum()):>6}  " + " / ".join(f"{v:.2f}" for v in q) + cap)


def legacy_only(plain: MoEData, tiles: MoEData) -> MoEData:
    """The default-tile table's padding and shared-memory ratio on the vLLM 0.14 collector's rows, the plain table
    elsewhere (both tables hold the same rows in the same order)."""
    legacy = np.isin(plain.source, LEGACY_SOURCES)
    cols = {k: getattr(plain, k) for k in MoEData.COLUMNS}
    cols["padded_rows"] = np.where(legacy, tiles.padded_rows, plain.padded_rows)
    cols["smem_ratio"] = np.where(legacy, tiles.smem_ratio, 1.0)
    return MoEData(**cols, files=plain.files, skipped=plain.skipped)


def legacy_share(plain: MoEData, tiles: MoEData) -> MoEData:
    """The vLLM 0.14 default-config rows on the default's M tile at `tile_share` of its M x N tile; else plain."""
    legacy = np.isin(plain.source, LEGACY_SOURCES) & plain.triton_default
    shapes = _triton_listing()["tiles"]
    small = plain.tokens <= plain.experts // plain.ep
    share = np.where(small, tile_share(shapes["small"][:2]), tile_share(shapes["large"][:2]))
    cols = {k: getattr(plain, k) for k in MoEData.COLUMNS}
    cols["padded_rows"] = np.where(legacy, tiles.padded_rows, plain.padded_rows)
    cols["tile_share"] = np.where(legacy, share, plain.tile_share)
    return MoEData(**cols, files=plain.files, skipped=plain.skipped)


def triton_breakdown(tables, hws, outer, held: str) -> None:
    """Held-out median log(measured / predicted) of a Triton device's rows per vLLM config and token range."""
    for cand, (tiles, smem) in CANDIDATES.items():
        d = tables[(held, tiles)]
        lr = np.log(d.measured_s / predict(outer[(held, cand)], d, hws[held], smem=smem))
        bins = np.digitize(d.tokens, TOKEN_EDGES, right=True)
        for flag, name in ((True, "default"), (False, "tuned")):
            sel = (d.kernel == "triton") & (d.triton_default == flag)
            if not sel.any():
                continue
            cells = [f"{np.median(lr[sel & (bins == i)]):+.2f}" if (sel & (bins == i)).any() else "  -  "
                     for i in range(len(TOKEN_LABELS))]
            print(f"  {hws[held].id:<16}{cand:<9}{name:<8}{int(sel.sum()):>6}  " + " ".join(f"{c:>6}" for c in cells))


def main() -> None:
    ap = moe_parser(__doc__)
    args = ap.parse_args()
    t0 = time.perf_counter()
    hws = device_hardware()
    print_predicted_ratios(hws)
    tables = {(g, tiles): load_moe_table(Path(args.data) / g, hws[g], default_tiles=tiles)
              for g in DEVICES for tiles in (False, True)}
    tables.update({(g, "v014"): legacy_only(tables[(g, False)], tables[(g, True)]) for g in DEVICES})
    tables.update({(g, "s014"): legacy_share(tables[(g, False)], tables[(g, True)]) for g in DEVICES})
    print(f"loaded in {time.perf_counter() - t0:.0f} s")
    achieved_fraction(tables, hws)
    print(f"{'held out':<22}" + "".join(f"{'inner ' + c:>15}" for c in CANDIDATES)
          + f"{'chosen':>10}{'median %':>10}{'p90 %':>8}")
    outer: dict[tuple[str, str], list[float]] = {}
    for held in DEVICES:
        train = [g for g in DEVICES if g != held]
        scores = {}
        for cand, (tiles, smem) in CANDIDATES.items():
            inner = [np.median(abs_err_pct(fit_on(tables, hws, [g for g in train if g != val], cand, args.fit_rows,
                                                  args.seed), tables[(val, tiles)], hws[val], smem)) for val in train]
            scores[cand] = float(np.mean(inner))
            outer[(held, cand)] = fit_on(tables, hws, train, cand, args.fit_rows, args.seed)
        best = min(scores, key=scores.get)
        err = abs_err_pct(outer[(held, best)], tables[(held, CANDIDATES[best][0])], hws[held], CANDIDATES[best][1])
        print(f"{hws[held].id:<22}" + "".join(f"{scores[c]:>15.2f}" for c in CANDIDATES)
              + f"{best:>10}{np.median(err):>10.2f}{np.percentile(err, 90):>8.2f}", flush=True)
    print("\nouter table of every candidate (median / p90 %; reference only)")
    for held in DEVICES:
        cells = []
        for cand, (tiles, smem) in CANDIDATES.items():
            err = abs_err_pct(outer[(held, cand)], tables[(held, tiles)], hws[held], smem)
            cells.append(f"{cand} {np.median(err):5.2f} / {np.percentile(err, 90):5.1f}")
        print(f"{hws[held].id:<22}" + "   ".join(cells))
    print("\nheld-out median log(measured / predicted), Triton rows, per token range " + " / ".join(TOKEN_LABELS))
    for held in ("a100_sxm", "h100_sxm"):
        triton_breakdown(tables, hws, outer, held)
    print(f"({time.perf_counter() - t0:.0f} s; inner scores: mean over the training devices of the median |error| "
          "of a fit on the other two)")


if __name__ == "__main__":
    main()
