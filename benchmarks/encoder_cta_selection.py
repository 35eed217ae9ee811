"""Nested check of the per-CTA floor share of ViT encoder attention (issue 11).

    python benchmarks/encoder_cta_selection.py        # ~25 s: 3 outer folds x (2 inner fits x 3 candidates + 3)
    python benchmarks/encoder_cta_selection.py --seed 1   # the tables' row subsample at seed 1 (fits at seed 0)

Candidates for the `attn_encoder` family of the general model (same links, ridge and rows, only the form differs):
- `softmax`: SoftmaxAttentionForm, a constant per-kernel floor (the setup before this change);
- `ctas-one`: CtaSoftmaxAttentionForm, the floor times 1 + cta_share x CTAs per SM, the CTA count from the kernel's
  query tile (lvlmsim.calibrate.kernels.vit_ctas), every kernel holding one CTA per SM. Argued from the encoder
  tables' p90 tails before it was run: at 1-64 tokens, batch 32 x 16 heads, B300 / H100 / RTX PRO 6000 take 21 / 16 /
  12.7 us against 7.0 / 8.3 / 6.8 us at batch 1, which a constant floor prices up to 80% fast.
- `ctas` (shipped): the same with FA2's two resident CTAs per SM (lvlmsim.calibrate.kernels.vit_resident_ctas: its
  48 KB CTAs, two to an SM), FA3 and FA4 one. Added after `ctas-one` had shipped, from FA2's kernel traits; only RTX
  PRO 6000 runs FA2 encoder rows, so in its own fold no inner device tells the two apart (a tie).
Per outer device, the candidate is picked by an inner leave-one-out over the other three (A100 has no encoder table,
so two inner folds, each fitted on one encoder device), fitted on the three and priced on the outer one. Prints
median / p90 |error| and the signed median of rows of <= 256 tokens per sequence. Needs ../shared/data/measured.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from seed_arg import only_seed  # noqa: E402

from lvlmsim.calibrate import general, kernels  # noqa: E402
from lvlmsim.calibrate import model as forms  # noqa: E402
from lvlmsim.calibrate.fit import cost_model_times  # noqa: E402
from lvlmsim.calibrate.kernels import with_kernel_features  # noqa: E402
from lvlmsim.calibrate.loo import inner_score, load_devices  # noqa: E402
from lvlmsim.calibrate.shipped import measured_dir  # noqa: E402

KEY, TABLES = "attn_encoder", ("encoder_attention",)
SHIPPED = general.FAMILY_SETUPS[KEY]
VARIANTS = {"softmax": "attention+softmax", "ctas-one": "attention+softmax+ctas", "ctas": "attention+softmax+ctas"}


def use(candidate: str) -> None:
    general.FAMILY_SETUPS[KEY] = general.FamilySetup(VARIANTS[candidate], SHIPPED.links, SHIPPED.ridge,
                                                     SHIPPED.auxiliary)
    forms.vit_resident_ctas = (lambda _kernel: 1) if candidate == "ctas-one" else kernels.vit_resident_ctas


def held_out_stats(devices: dict, train: list[str], held: str) -> str:
    """Median / p90 |error| and the signed median at <= 256 tokens of `held`'s encoder rows, fitted on `train`."""
    hw, rows = devices[held][0], [r for r in devices[held][1] if r.family in TABLES]
    fit_rows = {devices[n][0].id: (devices[n][0], [r for r in devices[n][1] if r.family in TABLES]) for n in train}
    model = general.fit_general(fit_rows, families=[KEY])
    err = cost_model_times(rows, hw, with_kernel_features(model.profile_for(hw), hw)) / np.array(
        [r.measured_s for r in rows]) - 1.0
    short = np.array([r.op.shape[1] <= 256 for r in rows])
    a = 100 * np.abs(err)
    return (f"{np.median(a):5.1f} / {np.percentile(a, 90):5.1f}%  (<= 256 tokens signed "
            f"{100 * np.median(err[short]):+5.1f}%)")


def main(argv: list[str] | None = None) -> int:
    try:
        seed = only_seed(list(argv if argv is not None else sys.argv[1:]))
    except ValueError as err:
        print(err)
        return 2
    measured = measured_dir(ROOT)
    if measured is None:
        print("shared/data/measured not found next to the checkout")
        return 1
    devices = load_devices(measured / "aiconfigurator" / "data", seed=seed)
    encoder = [n for n in devices if any(r.family in TABLES for r in devices[n][1])]
    for outer in encoder:
        inner = [n for n in devices if n != outer]
        scores = {}
        for candidate in VARIANTS:
            use(candidate)
            scores[candidate] = inner_score(devices, inner, KEY, TABLES)
        best = min(scores.values())
        picks = [c for c, s in scores.items() if s - best < 1e-6]  # equal scores: no inner device tells them apart
        inner_text = "  ".join(f"{c} {s:5.2f}" for c, s in scores.items())
        print(f"{outer:<20} inner {inner_text}  {'pick' if len(picks) == 1 else 'tie'} {' = '.join(picks)}",
              flush=True)
        for candidate in VARIANTS:
            use(candidate)
            print(f"    {candidate:<8} held-out {held_out_stats(devices, inner, outer)}", flush=True)
    use("ctas")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
