"""The leave-one-device-out tables of README.md and calibration/README.md, from one run (issue 11).

    python benchmarks/loo_tables.py              # print both tables (markdown): mean [min-max] over seeds 0-3
    python benchmarks/loo_tables.py --update     # rewrite their rows in README.md and calibration/README.md
    python benchmarks/loo_tables.py --seeds 1    # seed 0 alone (the tables' format before issue 11's seed check)
    python benchmarks/loo_tables.py --from-json loo.json --update   # from a saved `validate ... --json` run (no fit)

Runs exactly what `lvlmsim validate --leave-one-out --seeds 4 --data ../shared/data/measured/aiconfigurator/data` runs
(lvlmsim.calibrate.loo.leave_one_out_seeds, seeds 0-3), so the documented figures are the command's. One seed's
figure moves by more than the targets' margins (benchmarks/loo_seed_spread.py), so each cell is the mean over the
seeds with its range. README.md shows the median absolute error [min-max] with the flat derate's mean median in
parentheses; calibration/README.md shows median [min-max] / p90 [min-max] (flat). A table is found by its header line
and its rows are replaced up to the first line that is not a table row. Needs ../shared/data/measured (never copied
into the project); about 5 min of CPU with four seeds.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lvlmsim.calibrate.loo import leave_one_out, leave_one_out_seeds  # noqa: E402
from lvlmsim.calibrate.shipped import measured_dir  # noqa: E402

# (table family, README column header, calibration/README column header)
COLUMNS = (
    ("gemm", "GEMM (all dtypes)", "GEMM"),
    ("context_attention", "prefill attention", "prefill attention"),
    ("generation_attention", "decode attention", "decode attention"),
    ("encoder_attention", "ViT encoder attention", "ViT encoder attention"),
    ("nccl", "all-reduce", "NCCL all-reduce"),
    ("custom_allreduce", "vLLM custom all-reduce", "vLLM custom all-reduce"),
    ("alltoall", "all-to-all (EP)", "NCCL all-to-all"),
    ("moe", "MoE layer", "MoE layer"),
)
# device folder -> (README row label, calibration/README row label)
ROWS = {
    "a100_sxm": ("A100 SXM (Ampere, HBM2e)", "A100 SXM"),
    "h100_sxm": ("H100 SXM (Hopper)", "H100 SXM"),
    "b300_sxm": ("B300 (Blackwell Ultra)", "B300"),
    "rtx_pro_6000_server": ("RTX PRO 6000 Server (GDDR7, PCIe)", "RTX PRO 6000 Server"),
}


def _value(stats: dict, stat: str) -> str:
    """'12.3' (one seed) or '12.3 [11.8-13.0]' (several: mean [min-max])."""
    if f"{stat}_min" not in stats:
        return f"{stats[stat]:.1f}"
    return f"{stats[stat]:.1f} [{stats[stat + '_min']:.1f}-{stats[stat + '_max']:.1f}]"


def _cell(stats: dict | None, with_p90: bool) -> str:
    if stats is None or not stats["n"]:  # no table, or one whose every row was skipped (a cell with only `skipped`)
        return "- (no table)" if with_p90 else "-"
    flat = f"({stats['roofline_median_abs_pct_err']:.1f})"
    if with_p90:
        return f"{_value(stats, 'median_abs_pct_err')} / {_value(stats, 'p90_abs_pct_err')} {flat}"
    med, *spread = _value(stats, "median_abs_pct_err").split(" ", 1)
    return " ".join([f"{med}%", *spread, flat])


def table(report: dict, which: int) -> list[str]:
    """Markdown lines (header, rule, one row per device) of README (which=0) or calibration/README (which=1)."""
    header = "| held-out device | " + " | ".join(c[1 + which] for c in COLUMNS) + " |"
    lines = [header, "|---" * (len(COLUMNS) + 1) + "|"]
    for folder, labels in ROWS.items():
        if folder not in report:
            continue
        cells = [_cell(report[folder].get(fam), which == 1) for fam, *_ in COLUMNS]
        lines.append(f"| {labels[which]} | " + " | ".join(cells) + " |")
    return lines


def replace_table(text: str, lines: list[str]) -> str:
    """`text` with the table whose header is lines[0] replaced by `lines`; an error if the header is absent."""
    src = text.split("\n")
    try:
        start = src.index(lines[0])
    except ValueError:
        raise SystemExit(f"table header not found: {lines[0]}") from None
    end = start
    while end < len(src) and src[end].startswith("|"):
        end += 1
    return "\n".join(src[:start] + lines + src[end:])


def write_tables(report: dict, update: bool) -> int:
    """Print both tables from a leave-one-out report and, with `update`, rewrite them in place."""
    for which, path in enumerate((ROOT / "README.md", ROOT / "calibration" / "README.md")):
        lines = table(report, which)
        print(f"{path.relative_to(ROOT)}:\n" + "\n".join(lines) + "\n")
        if update:
            path.write_text(replace_table(path.read_text(), lines))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--update", action="store_true", help="rewrite the tables in README.md and calibration/README.md")
    ap.add_argument("--seeds", type=int, default=4, help="subsample seeds 0..N-1 (default 4; 1: seed 0 alone)")
    ap.add_argument("--from-json", type=Path, metavar="PATH",
                    help="the report `lvlmsim validate --leave-one-out --seeds 4 --json` wrote (runs nothing)")
    args = ap.parse_args(argv)
    if args.from_json is not None:
        return write_tables(json.loads(args.from_json.read_text()), args.update)
    if args.seeds < 1:
        raise SystemExit(f"--seeds: must be a whole number >= 1, got {args.seeds}")
    measured = measured_dir(ROOT)
    if measured is None:
        print("shared/data/measured not found next to the checkout: nothing to run")
        return 1
    data = measured / "aiconfigurator" / "data"
    if args.seeds == 1:
        report, _residuals, info = leave_one_out(data)
    else:
        report, _residuals, info = leave_one_out_seeds(data, list(range(args.seeds)))
    write_tables(report, args.update)
    seeds = info.get("seeds", [info.get("seed")])
    print(f"leave-one-out: {info['seconds']} s, seeds {seeds}" + ("; tables rewritten" if args.update else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
