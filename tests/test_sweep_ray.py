"""The Ray executor on a real local Ray (2 CPUs, started here) gives exactly the local executor's results, for a sweep
and for a plan's capacity searches. Skipped with a reason where Ray is not installed (`lvlmsim[distributed]`)."""

from __future__ import annotations

import pandas as pd
import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'lvlmsim[distributed]' (or pip install ray)")

from lvlmsim.planner import SearchSettings, plan, sweep  # noqa: E402
from lvlmsim.specs.scenario import load_scenario  # noqa: E402

pytestmark = pytest.mark.slow

SPEC = {
    "name": "ray-check",
    "base": "llava-chat-h100",
    "overrides": {"workload.requests": 60, "profile": "default"},
    "runs": [{"hardware": "h100-sxm"}, {"hardware": "l40s", "serving.tp": 2}, {"hardware": "nope-gpu"}],
    "grid": {"rate": [2, 6]},
}


@pytest.fixture(scope="module")
def local_ray():
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def test_sweep_on_ray_equals_local(local_ray, tmp_path, pool_safe_main):
    on_ray = sweep(SPEC, out=tmp_path / "ray.parquet", executor="ray")
    assert ray.is_initialized()  # a Ray the caller started is left running
    local = sweep(SPEC, out=tmp_path / "local.parquet", executor="local", workers=2)
    assert len(on_ray) == 6 and (on_ray.status == "ok").sum() == 4
    pd.testing.assert_frame_equal(on_ray.drop(columns="wall_s"), local.drop(columns="wall_s"))


def test_plan_on_ray_equals_serial(local_ray):
    kwargs = dict(target_rate=6, slos="ttft_p90=1.0,tpot_p90=0.05", hardware="h100-sxm,l40s", tp=[1],
                  layouts=["agg"], settings=SearchSettings(probe_duration_s=8, min_requests=40, max_requests=8192,
                                                           tolerance=0.15))
    base = load_scenario("llava-chat-h100").model_copy(update={"profile": "default"})
    a = plan(base, executor="ray", **kwargs)
    b = plan(base, executor="serial", **kwargs)
    drop = ["search_wall_s"]
    pd.testing.assert_frame_equal(a.candidates.drop(columns=drop), b.candidates.drop(columns=drop))
    assert a.recommended == b.recommended and a.recommended is not None
