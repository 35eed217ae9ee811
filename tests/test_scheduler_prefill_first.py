"""serving.mixed_batches false, SGLang's default scheduling (Scheduler.get_next_batch_to_run: "Run prefill first if
possible"; decodes join a prefill batch only with --enable-mixed-chunk): a step carries prefill chunks or decodes,
never both, and a waiting prefill goes first. Checked by the exact step sequence of hand-built runs, against the
mixed steps vLLM V1's scheduler forms on the same requests."""

from __future__ import annotations

import itertools

import pytest

from lvlmsim.engine.api import simulate
from lvlmsim.engine.instance import LlmInstance


def two_requests(prompt_tokens: int, **serving) -> dict:
    """Two text requests of `prompt_tokens` one second apart (the first decodes 400 tokens, ~3 s on an H100, so it
    is still decoding when the second arrives)."""
    return {
        "model": "llava-1.5-7b", "hardware": "h100-sxm", "seed": 0,
        "serving": {"max_num_seqs": 8, **serving},
        "workload": {"requests": 2, "arrival": {"kind": "constant", "rate_rps": 1.0},
                     "prompt_tokens": prompt_tokens,
                     "output_tokens": 400, "images": 0},
    }


def step_runs(doc: dict, monkeypatch) -> list[tuple]:
    """The run's steps as (prefill chunk sizes, decoding sequences), consecutive equal steps merged into one; the
    decode fast path is off so that every step is planned and priced one by one."""
    steps: list[tuple] = []
    price = LlmInstance.price

    def record(self, step):
        out = price(self, step)
        steps.append((tuple(n for _, n in step.chunks), out.n_dec))
        return out

    monkeypatch.setattr(LlmInstance, "price", record)
    monkeypatch.setattr(LlmInstance, "use_fast_path", False)
    simulate(doc)
    return [k for k, _ in itertools.groupby(steps)]


@pytest.mark.parametrize("mixed", [False, True])
def test_a_new_prompt_runs_alone_only_without_mixed_batches(mixed: bool, monkeypatch):
    """Request 1's 100-token prefill: alone (0 decodes) prefill-first, beside request 0's decode when mixed."""
    runs = step_runs(two_requests(100, mixed_batches=mixed), monkeypatch)
    second = ((100,), 1 if mixed else 0)
    assert runs == [((100,), 0), ((), 1), second, ((), 2), ((), 1)]


def test_a_chunked_prompt_holds_the_decodes_until_its_last_chunk(monkeypatch):
    """600-token prompts under a 256-token budget: request 1's chunks 256, 256, 88 in a row, request 0 not
    decoding between them (SGLang's chunked_req keeps the next batch a prefill); mixed, each of its chunks shares
    the step with request 0's decode and so gets one token less of the budget (255, 255, 90)."""
    alone = step_runs(two_requests(600, max_num_batched_tokens=256, mixed_batches=False), monkeypatch)
    assert alone == [((256,), 0), ((88,), 0), ((), 1), ((256,), 0), ((88,), 0), ((), 2), ((), 1)]
    mixed = step_runs(two_requests(600, max_num_batched_tokens=256, mixed_batches=True), monkeypatch)
    assert mixed == [((256,), 0), ((88,), 0), ((), 1), ((255,), 1), ((90,), 1), ((), 2), ((), 1)]


def test_lvlmsim_bench_gives_sglang_prefill_first_and_vllm_mixed_steps():
    """The runtime data file carries the default (runtimes.yaml server_defaults): SGLang's server prefill first on
    every device, vLLM V1's mixed (the ServingSpec default, not set by its defaults)."""
    from lvlmsim.cost.host import server_defaults
    from lvlmsim.specs.registry import load_hardware
    from lvlmsim.specs.serving import ServingSpec

    for hw in ("b200", "mi300x", "h100-sxm", "l4"):
        assert server_defaults("sglang", load_hardware(hw))["mixed_batches"] is False
        assert "mixed_batches" not in server_defaults("vllm", load_hardware(hw))
    assert ServingSpec().mixed_batches is True
