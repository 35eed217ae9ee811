"""The `--seed N` flag the nested selection scripts share: the measured tables' row subsample seed
(lvlmsim.calibrate.loo.load_devices), so a pick made at seed 0 can be re-run at another subsample (calibration/README,
"Robustness of the shipped picks to the subsample seed"). The fit's own draw stays at 0, as gemm_overlap_selection.py
--seed. Without the flag a script runs at seed 0, as before."""
from __future__ import annotations


def pop_seed(args: list[str]) -> tuple[int, list[str]]:
    """(seed, the other arguments) from `args`; ValueError with a one-line message naming the flag when its value is
    missing or not a non-negative integer."""
    if "--seed" not in args:
        return 0, list(args)
    i = args.index("--seed")
    value = args[i + 1] if i + 1 < len(args) else ""
    if not value.isdigit():
        raise ValueError(f"--seed: expected a non-negative integer (the table subsample seed), got {value!r}")
    return int(value), args[:i] + args[i + 2:]


def only_seed(args: list[str]) -> int:
    """The seed of a script whose only flag is `--seed N` (0 without it); ValueError naming any other argument."""
    seed, rest = pop_seed(args)
    if rest:
        raise ValueError(f"unknown argument {' '.join(rest)!r}; allowed: --seed N (a non-negative integer)")
    return seed
