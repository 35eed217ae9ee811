"""Nested check of parallel work per SM for prefill, windowed prefill and ViT encoder attention (issues 11 + 16).

    python benchmarks/attention_work_selection.py                 # both families, every candidate, ~2.5 min
    python benchmarks/attention_work_selection.py encoder shipped sm_tiles-q0     # one family, candidates by name
    python benchmarks/attention_work_selection.py prefill fa3 fa3+sm_tokens fa3+sm_tiles     # with FA3's tiles
    python benchmarks/attention_work_selection.py --bands encoder shipped sm_tokens+rate   # signed error by tokens

FlashAttention-2/3/4 and TRT-LLM-gen's context kernels launch one CTA per (128-256-row query tile, head, sequence),
so the work that fills a GPU is counted in tiles per SM, not in tokens against peak FLOP/s. Candidates, per family
(`prefill`: attn_prefill, scored on full and windowed prefill; `encoder`: attn_encoder, scored on ViT encoder
attention; the two are fitted apart, so each is selected on its own tables; the per-SM forms live here, as nothing
ships them):

* `shipped`: general.FAMILY_SETUPS as it is (work = batch x heads x tokens; the encoder's w0 linked to peak FLOP/s,
  its q0 to the tensor rate per SM per clock).
* `sm_tokens`: work = batch x heads x tokens / SMs, no link on w0 (the SM count is in the feature).
* `sm_tiles`: work = batch x heads x ceil(tokens / 128) / SMs, no link on w0.
* `-q0` (encoder only, with either): the encoder's q0 link dropped as well.
* `clock` (either family): the shipped setup plus the floor linked to the clock, prior exponent -1 (a launch and
  prologue of a fixed number of cycles; B300 publishes no clock and gets H100's).
* `+rate` (encoder only, with either): w0 per SM linked to the tensor FLOPs per SM per clock with GEMM's prior 1/2
  (general.SM_RATE_PRIOR: the work an SM holds in flight to hide a fixed per-tile latency grows with its MMA rate).

Per outer device, the candidate is picked by an inner leave-one-out over the other three (mean over the inner devices
that have the family's tables of the mean of their median |error| on them), fitted on the three and priced on the
outer one. The last lines apply the same selection to all four devices (leave-one-out over
the four): that is what would ship, and the nested figures are the honest held-out estimate of that procedure.
Needs ../shared/data/measured (never copied into the project).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lvlmsim.calibrate import general  # noqa: E402
from lvlmsim.calibrate import model as forms  # noqa: E402
from lvlmsim.calibrate.fit import cost_model_times  # noqa: E402
from lvlmsim.calibrate.kernels import with_kernel_features  # noqa: E402
from lvlmsim.calibrate.loo import fold_table_errors, load_devices  # noqa: E402
from lvlmsim.calibrate.shipped import measured_dir  # noqa: E402
from lvlmsim.ops.op import Op  # noqa: E402
from lvlmsim.specs.hardware import HardwareSpec  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
import window_tile_selection  # noqa: E402

# FA2's forward launches grid = (ceil(q / kBlockM), batch, heads) (flash_fwd_launch_template.h); FA3 and the sm100
# kernels schedule the same (query tile, head, sequence) items over the SMs, persistent or not. A faster SM runs each
# tile faster but holds the same one or two CTAs, so the work that fills the machine is counted per SM. 128 rows: the
# kBlockM of FA2/FA3 at head sizes 64-128, half a TRT-LLM-gen CTA.
QUERY_TILE_ROWS = 128
WORK_UNITS = ("sm_tokens", "sm_tiles")


def parallel_work(op: Op, hw: HardwareSpec, unit: str) -> float:
    """batch x heads x tokens per SM (`sm_tokens`) or batch x heads x 128-row query tiles per SM (`sm_tiles`)."""
    batch, q, _kv, heads = op.shape[:4]
    q = max(float(q), 1.0)
    sms = float(hw.sm_count or forms.REF_SM_COUNT)
    per_seq = q if unit == "sm_tokens" else float(math.ceil(q / QUERY_TILE_ROWS))
    return float(batch) * heads * per_seq / sms


def _per_sm_core(core: tuple[forms.Param, ...], unit: str) -> tuple[forms.Param, ...]:
    """`core` with w0 in `unit` (initial value: the default form's 2e4 tokens on H100's 132 SMs)."""
    init = 2e4 / forms.REF_SM_COUNT / (1.0 if unit == "sm_tokens" else QUERY_TILE_ROWS)
    w0 = forms.Param("w0", "pos", init, f"parallel work at half saturation ({unit})")
    return tuple(w0 if q.name == "w0" else q for q in core)


class PerSmAttentionForm(forms.AttentionForm):
    """AttentionForm whose parallel work is counted per SM."""

    def __init__(self, unit: str):
        self.unit, self.name = unit, f"attention+{unit}"
        self.core = _per_sm_core(forms.AttentionForm.core, unit)

    def features(self, op: Op, hw: HardwareSpec) -> tuple[float, ...]:
        q, _work, d, nbytes = super().features(op, hw)
        return (q, parallel_work(op, hw, self.unit), d, nbytes)


class PerSmSoftmaxAttentionForm(forms.SoftmaxAttentionForm):
    """SoftmaxAttentionForm whose parallel work is counted per SM."""

    def __init__(self, unit: str):
        self.unit, self.name = unit, f"attention+softmax+{unit}"
        self.core = _per_sm_core(forms.SoftmaxAttentionForm.core, unit)

    def features(self, op: Op, hw: HardwareSpec) -> tuple[float, ...]:
        q, _work, *rest = super().features(op, hw)
        return (q, parallel_work(op, hw, self.unit), *rest)


for _unit in WORK_UNITS:
    forms.FORM_VARIANTS[f"attention+{_unit}+l2"] = forms.CachedForm(PerSmAttentionForm(_unit))
    forms.FORM_VARIANTS[f"attention+softmax+{_unit}"] = PerSmSoftmaxAttentionForm(_unit)

# family -> (its key, the tables it is fitted and scored on, its candidates)
FAMILIES = {"prefill": ("attn_prefill", ("context_attention", "context_attention_sliding"),
                        ("shipped", "sm_tokens", "sm_tiles", "clock")),
            "encoder": ("attn_encoder", ("encoder_attention",),
                        ("shipped", "sm_tokens", "sm_tokens-q0", "sm_tiles", "sm_tiles-q0", "sm_tokens+rate",
                         "sm_tokens+rate-q0", "sm_tiles+rate", "clock"))}
# Run only when named: prefill with FA3's windowed tiles (benchmarks/window_tile_selection.py's `fa3`, which its nested
# check picks in three folds) and the shipped or a per-SM work count.
NAMED_ONLY = {"prefill": ("fa3", "fa3+sm_tokens", "fa3+sm_tiles"), "encoder": ()}
SHIPPED = dict(general.FAMILY_SETUPS)


def setup(family: str, candidate: str) -> general.FamilySetup:
    """The FAMILY_SETUPS entry of `family` under `candidate`."""
    key = FAMILIES[family][0]
    candidate = candidate.removeprefix("fa3+") if candidate != "fa3" else "shipped"
    if candidate == "shipped":
        return SHIPPED[key]
    if candidate == "clock":
        old = SHIPPED[key]
        links = {**old.links, "floor_s": {**old.links["floor_s"], "log_clock": -1.0}}
        return general.FamilySetup(old.variant, links, old.ridge, old.auxiliary, old.window_bound_rows)
    unit, _, drop = candidate.partition("-")
    unit, _, rate = unit.partition("+")
    old = SHIPPED[key]
    if family == "prefill":
        return general.FamilySetup(f"attention+{unit}+l2", old.links, old.ridge, old.auxiliary,
                                   old.window_bound_rows)
    links = {p: links for p, links in old.links.items() if p != "w0" and not (drop == "q0" and p == "q0")}
    if rate:
        links["w0"] = {"log_sm_rate": general.SM_RATE_PRIOR}
    return general.FamilySetup(f"attention+softmax+{unit}", links, old.ridge, old.auxiliary)


def use(family: str, candidate: str) -> None:
    window_tile_selection.use("fa3" if candidate.startswith("fa3") else "shipped")
    general.FAMILY_SETUPS.clear()
    general.FAMILY_SETUPS.update({**SHIPPED, FAMILIES[family][0]: setup(family, candidate)})


def held_out(devices: dict, family: str, train: list[str], held: str) -> dict[str, float]:
    """Median |error| per table of `family` on `held`, the family fitted on `train` ({} if `held` has none)."""
    key, tables, _ = FAMILIES[family]
    return fold_table_errors(devices, train, held, key, tables)


TOKEN_BANDS = ((1, 256), (257, 1024), (1025, None))  # tokens per sequence: where the small-kernel misses sit


def signed_bands(devices: dict, family: str, train: list[str], held: str) -> str:
    """Signed median error (priced / measured - 1, %) per TOKEN_BANDS of `held`'s rows of `family`, fitted on
    `train`: which way, and in which regime, a held-out device is missed."""
    key, tables, _ = FAMILIES[family]
    hw, rows = devices[held][0], [r for r in devices[held][1] if r.family in tables]
    fit_rows = {devices[n][0].id: (devices[n][0], [r for r in devices[n][1] if r.family in tables]) for n in train}
    model = general.fit_general(fit_rows, families=[key])
    err = cost_model_times(rows, hw, with_kernel_features(model.profile_for(hw), hw)) / np.array(
        [r.measured_s for r in rows]) - 1.0
    q = np.array([r.op.shape[1] for r in rows])
    out = []
    for lo, hi in TOKEN_BANDS:
        sel = (q >= lo) & (q <= (hi or np.inf))
        if sel.any():
            out.append(f"{lo}-{hi or ''} tokens ({sel.sum()}) {100 * np.median(err[sel]):+5.1f}%")
    return ", ".join(out)


def loo_score(devices: dict, family: str, names: list[str]) -> tuple[float, dict[str, dict[str, float]]]:
    """Mean over `names` with the family's tables of each one's mean median |error|, each fitted on the others."""
    per = {i: held_out(devices, family, [n for n in names if n != i], i) for i in names}
    per = {i: v for i, v in per.items() if v}
    return float(np.mean([np.mean(list(v.values())) for v in per.values()])), per


def fmt(family: str, tables: dict[str, float]) -> str:
    return " / ".join(f"{tables[t]:4.1f}" for t in FAMILIES[family][1] if t in tables)


def select(devices: dict, family: str, candidates: tuple[str, ...]) -> None:
    """Print the nested selection of `family` per outer device, then the leave-one-out over all four."""
    print(f"{family}: held-out median |error| % ({' / '.join(FAMILIES[family][1])}); inner: mean of inner folds")
    for outer in devices:
        if not any(r.family in FAMILIES[family][1] for r in devices[outer][1]):
            continue
        inner = [n for n in devices if n != outer]
        scores, outs = {}, {}
        for candidate in candidates:
            use(family, candidate)
            scores[candidate] = loo_score(devices, family, inner)[0]
            outs[candidate] = held_out(devices, family, inner, outer)
        pick = min(scores, key=scores.get)  # the first (shipped) on a tie
        print(f"{outer:<20} pick {pick:<14} held-out {fmt(family, outs[pick])}", flush=True)
        for candidate in candidates:
            print(f"    {candidate:<14} inner {scores[candidate]:5.2f}  held-out {fmt(family, outs[candidate])}",
                  flush=True)
    full = {}
    for candidate in candidates:
        use(family, candidate)
        full[candidate], per = loo_score(devices, family, list(devices))
        folds = ", ".join(f"{n} {fmt(family, v)}" for n, v in per.items())
        print(f"all four, {candidate:<14} {full[candidate]:5.2f}  {folds}", flush=True)
    print(f"{family}: leave-one-out over all four picks {min(full, key=full.get)}")
    use(family, "shipped")


def main() -> int:
    measured = measured_dir(ROOT)
    if measured is None:
        print("shared/data/measured not found next to the checkout")
        return 1
    args = [a for a in sys.argv[1:] if a != "--bands"]
    families = [a for a in args if a in FAMILIES] or list(FAMILIES)
    named = tuple(a for a in args if a not in FAMILIES)
    for family in families:
        known = FAMILIES[family][2] + NAMED_ONLY[family]
        bad = [c for c in named if c not in known]
        if bad:
            print(f"candidate(s) {', '.join(bad)} for {family}: must be one of {', '.join(known)}")
            return 2
    devices = load_devices(measured / "aiconfigurator" / "data")
    for family in families:
        if "--bands" in sys.argv:  # leave-one-out over all four, signed error per token band
            print(f"{family}: held-out signed median error (priced / measured - 1) by tokens per sequence")
            for candidate in named or FAMILIES[family][2]:
                use(family, candidate)
                for held in devices:
                    if any(r.family in FAMILIES[family][1] for r in devices[held][1]):
                        train = [n for n in devices if n != held]
                        print(f"  {candidate:<14} {held:<20} {signed_bands(devices, family, train, held)}", flush=True)
            use(family, "shipped")
            continue
        select(devices, family, named or FAMILIES[family][2])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
