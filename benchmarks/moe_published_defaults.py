"""Published vLLM fused-MoE kernel times on the default config against a tuned file, and whether they can price A100.

Prints every pair in calibration/vllm_fused_moe_published_timings.yaml (rows per touched expert under even
routing, default and tuned us, their ratio), the ratios by default rule (old: vLLM's pre-v0.17 get_default_config,
which A100's vLLM 0.14 table ran; new; unstated), and whether at least `MIN_OLD_RULE_SOURCES` independent old-rule
sources exist, the condition, fixed before the search, for fitting an old-default / tuned ratio on them (issue 12,
wave 7; docs/moe.md round 11). With --data (../shared, never copied into the project) it also prints where A100's
default-config rows sit in rows per touched expert, by token bin, against the rows per touched expert the old-rule
pairs cover: regimes only, no model error is computed.

    PYTHONPATH=. python benchmarks/moe_published_defaults.py [--data DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lvlmsim.calibrate import moe_published as mp  # noqa: E402

TOKEN_BINS = [0, 16, 256, 1024, 4096, 10**9]  # the bins of benchmarks/moe_residuals.py and docs/moe.md
TOKEN_LABELS = ["1-16", "17-256", "257-1024", "1025-4096", ">4096"]


def print_pairs(doc: mp.PublishedTimings) -> None:
    for src in doc.sources:
        print(f"\n{src.url} ({src.author}, {src.date}) {src.gpu}, {src.model}: E {src.experts_local}, "
              f"N {src.inter_local}, K {src.hidden or '?'}, top-{src.topk or '?'}; default rule: {src.default_rule}")
        print(f"  {'batch':>6} {'rows/expert':>11} {'default us':>11} {'tuned us':>10} {'default/tuned':>13}")
        for p in src.points:
            rows = src.rows_per_expert(p.batch)
            rows_s = f"{rows:11.2f}" if rows is not None else f"{'?':>11}"
            print(f"  {p.batch:>6} {rows_s} {p.default_us:>11.1f} {p.tuned_us:>10.1f} {p.ratio:>13.3f}")


def print_verdict(doc: mp.PublishedTimings) -> None:
    print("\nDefault / tuned time by default rule (median, min-max over points):")
    for rule, s in mp.ratio_summary(doc).items():
        print(f"  {rule:>8}: {s['sources']} source(s), {s['points']} points, median {s['median']:.3f}, "
              f"{s['min']:.3f}-{s['max']:.3f}")
    old = mp.old_rule_sources(doc)
    print(f"\nIndependent old-rule sources: {len(old)} (needed to fit a ratio: {mp.MIN_OLD_RULE_SOURCES}) -> "
          + ("fit allowed" if mp.fit_allowed(doc) else "NOT fitted: data file and finding only"))


def old_rule_rows_range(doc: mp.PublishedTimings) -> tuple[float, float] | None:
    """Rows per touched expert the old-rule pairs cover (min, max), where their top-k is stated."""
    rows = [r for s in mp.old_rule_sources(doc) for p in s.points
            if (r := s.rows_per_expert(p.batch)) is not None]
    return (min(rows), max(rows)) if rows else None


def print_a100_regimes(data_dir: Path, doc: mp.PublishedTimings) -> None:
    """A100's vLLM 0.14 default-config rows by token bin: rows per touched expert, against the old-rule coverage."""
    from lvlmsim.calibrate.moe import LEGACY_SOURCES, load_moe_table
    from lvlmsim.specs.registry import load_hardware

    folder = data_dir / "a100_sxm"
    if not folder.is_dir():
        print(f"\n(no {folder}: A100 regimes skipped)")
        return
    data = load_moe_table(folder, load_hardware("a100-sxm-80gb"))
    keep = data.triton_default & np.isin(data.source, LEGACY_SOURCES)
    rows, tokens = data.rows_per_expert[keep], data.tokens[keep]
    span = old_rule_rows_range(doc)
    covered = (f"old-rule pairs cover {span[0]:g}-{span[1]:g} rows per touched expert" if span
               else "no old-rule pair states its top-k")
    print(f"\nA100 vLLM 0.14 default-config rows ({int(keep.sum())} of {len(data)}): rows per touched expert by "
          f"token bin; {covered}")
    print(f"  {'tokens':>10} {'rows':>6} {'p10':>8} {'median':>8} {'p90':>8} {'in covered range':>17}")
    bins = np.digitize(tokens, TOKEN_BINS[1:-1], right=True)
    for i, label in enumerate(TOKEN_LABELS):
        r = rows[bins == i]
        if r.size == 0:
            continue
        inside = float(np.mean((r >= span[0]) & (r <= span[1]))) if span else float("nan")
        p10, med, p90 = np.percentile(r, [10, 50, 90])
        print(f"  {label:>10} {r.size:>6} {p10:>8.1f} {med:>8.1f} {p90:>8.1f} {inside:>16.0%}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared/data/measured/aiconfigurator/data"),
                    help="aiconfigurator tables (for the A100 regime table; skipped when absent)")
    args = ap.parse_args()
    doc = mp.load_published()
    print_pairs(doc)
    print_verdict(doc)
    print_a100_regimes(Path(args.data), doc)


if __name__ == "__main__":
    main()
