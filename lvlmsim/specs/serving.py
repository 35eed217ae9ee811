"""ServingSpec: how a model is served: batching knobs (vLLM's names), KV paging, parallelism, replicas, routing and
disaggregated pools."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt, model_validator

from lvlmsim.specs.base import StrictModel

# Routers of a pool: each name is a Router of lvlmsim.engine.router (this is the registration)
ROUTERS = ("round_robin", "least_outstanding", "kv_aware", "session_affinity")
Router = Literal[ROUTERS]
# Scheduler policies of an LLM instance: each name is a module of lvlmsim.engine.schedulers (this is its registration)
SCHEDULERS = ("fcfs", "priority", "sjf", "sarathi", "edf")
Scheduler = Literal[SCHEDULERS]
# Serving runtimes: each name is a row of lvlmsim.cost.runtime.RUNTIMES (its floor and overhead, with sources)
RUNTIME_NAMES = ("vllm", "sglang", "trtllm", "eager")
Runtime = Literal[RUNTIME_NAMES]
Role = Literal["E", "P", "D", "EP", "PD", "EPD"]


class LinkConfig(StrictModel):
    """The network between pools, per GPU: each GPU of a tensor-parallel group sends its own shard in parallel."""

    bw_gbps: PositiveFloat = Field(description="GB/s per GPU and direction (1 GB = 1e9 bytes)")
    latency_us: NonNegativeFloat = Field(10.0, description="one-way latency per transfer, microseconds")
    name: str = ""


# Instances of one pool (or replicas of a colocated deployment): 10,000 build in ~30 s and ~0.2 GB; 10^9 (a typo
# for a rate, or a plan layout 'E+PD:1:1000000000') filled memory for minutes without a word.
MAX_INSTANCES = 10_000


class PoolSpec(StrictModel):
    """A group of identical instances serving some stages: E (encode), P (prefill), D (decode) or a combination."""

    role: Role
    name: str | None = Field(None, description="default: the role")
    hardware: str | None = Field(None, description="hardware id or YAML path; default: the scenario's hardware")
    instances: PositiveInt = Field(1, le=MAX_INSTANCES)
    tp: PositiveInt = 1
    ep: PositiveInt = Field(1, description="expert-parallel degree of a MoE model inside each instance (divides tp)")

    @property
    def label(self) -> str:
        return self.name or self.role


HostProfileName = Literal["vllm-v0", "vllm-v1-piecewise", "vllm-v1", "vllm-v1-async", "sglang", "trtllm"]


def host_runtime_mismatch(host: object, runtime: str | None) -> str | None:
    """Why a host profile name does not go with the serving runtime (another engine's host time), or None."""
    if not isinstance(host, str) or runtime is None or host.strip().lower().split("-")[0] == runtime:
        return None
    same = [n for n in get_args(HostProfileName) if n.split("-")[0] == runtime]
    allowed = ", ".join([*same, "true", "false"]) if same else f"false (no host profile is measured for {runtime})"
    return (f"'{host}' is a version of {host.strip().lower().split('-')[0]}, not of the serving runtime {runtime}; "
            f"allowed with it: {allowed}")


def _check_pool_degrees(serving: ServingSpec) -> None:
    """With explicit pools the serving-level replica count and degrees are not read: each pool has its own. An
    encode-only pool runs no experts, so an ep there was dropped too."""
    ignored = [f"{k} {v}" for k, v in (("instances", serving.instances), ("tp", serving.tp), ("ep", serving.ep))
               if v != 1]
    if ignored:
        raise ValueError(f"{', '.join(ignored)}: not read with explicit pools; set instances, tp and ep on each pool "
                         "(allowed at serving level with pools: 1)")
    for p in serving.pools:
        if p.role == "E" and p.ep != 1:
            raise ValueError(f"pools: '{p.label}' encodes only (role E) and runs no experts; allowed ep: 1, got "
                             f"{p.ep}")


class ServingSpec(StrictModel):
    instances: PositiveInt = Field(1, le=MAX_INSTANCES,
                                   description="replicas behind the router (colocated mode, no `pools`)")
    tp: PositiveInt = Field(1, description="tensor-parallel degree of each replica (colocated mode)")
    ep: PositiveInt = Field(1, description="expert-parallel degree of a MoE model in each replica (divides tp)")
    router: Router = "least_outstanding"
    max_num_seqs: PositiveInt = Field(256, description="vLLM max_num_seqs: sequences in one batch")
    max_num_batched_tokens: PositiveInt = Field(8192, description="vLLM max_num_batched_tokens: tokens per step")
    chunked_prefill: bool = True
    mixed_batches: bool = Field(
        True, description="with chunked prefill, one step may carry the decode tokens and prefill chunks together "
        "(vLLM V1; SGLang only with --enable-mixed-chunk); false: prefill first, a step of prefill chunks alone "
        "whenever one can run and a decode step otherwise (SGLang's default, which lvlmsim bench applies: "
        "runtimes.yaml server_defaults)")
    block_size: PositiveInt = Field(16, description="tokens per paged KV block")
    gpu_memory_utilization: float = Field(0.9, gt=0.0, le=1.0)
    max_model_len: PositiveInt | None = Field(None, description="longest sequence accepted; default: the model's")
    allow_long_max_model_len: bool = Field(
        False, description="accept a max_model_len above the model's max_position_embeddings, as vLLM does only with "
        "VLLM_ALLOW_LONG_MAX_MODEL_LEN=1 (its config check refuses it otherwise)")
    encoder_budget_tokens: PositiveInt | None = Field(
        None, description="vLLM max_num_encoder_input_tokens: visual tokens encoded per step; default "
        "max_num_batched_tokens (a single larger item still runs alone)"
    )
    encoder_cache_tokens: PositiveInt | None = Field(
        None, description="vLLM encoder_cache_size: visual tokens encoded but not yet prefilled; default: the budget"
    )
    max_queue_len: PositiveInt | None = Field(None, description="reject arrivals when an instance queue is this long")
    runtime: Runtime | None = Field(
        None, description="serving runtime: its per-kernel floor and per-step launch overhead (lvlmsim list "
        "runtimes); default none: kernels as the profile has them, no launch overhead")
    enforce_eager: bool = Field(
        False, description="the runtime without CUDA graphs (vLLM --enforce-eager or -O0, SGLang "
        "--disable-cuda-graph): every kernel launched from Python, so the eager kernel floor and step overhead "
        "replace the runtime's (lvlmsim list runtimes); needs serving.runtime vllm | sglang | trtllm")
    prefix_caching: bool = Field(
        False, description="automatic prefix caching of text prompts that share token prefixes (workload."
        "text_prefix: a benchmark client's random prompts): a prompt reuses the cached KV of its stream's full "
        "blocks (lvlmsim.engine.prefix). vLLM V1 and SGLang have it on by default, which lvlmsim bench applies "
        "(runtimes.yaml server_defaults); off here because a scenario's prompts carry no token identity")
    step_overhead_s: NonNegativeFloat = Field(0.0, description="CPU scheduling time added to every batch step, on "
                                              "top of the runtime's launch overhead")
    scheduler: Scheduler = Field("fcfs", description="batch-forming policy of each LLM instance: " + ", ".join(
        SCHEDULERS) + " (lvlmsim.engine.schedulers)")
    scheduler_token_budget: PositiveInt | None = Field(
        None, description="sarathi: tokens per step (Sarathi-Serve's token budget); default 512")
    sjf_aging_tokens_per_s: NonNegativeFloat = Field(
        1000.0, description="sjf: a waiting request's prompt counts this many tokens shorter per second since it "
        "arrived, so long prompts are not starved (0: pure shortest-prompt-first)")
    encoder_policy: Literal["co_batch", "encode_ahead"] = Field(
        "co_batch", description="co_batch: a request's encoder runs in the step of its first prefill chunk (vLLM); "
        "encode_ahead: leftover encoder budget also encodes requests still waiting for KV blocks")
    preemption: Literal["recompute", "swap"] = Field(
        "recompute", description="recompute: a preempted request's KV is dropped and recomputed (vLLM v1); swap: a "
        "decoding request's KV goes to host memory over the host link and comes back")
    swap_bw_gbps: PositiveFloat | None = Field(
        None, description="swap: host-link GB/s per GPU and direction; default: the hardware's host_link_gbps")
    host_costs: bool | HostProfileName | None = Field(
        None, description="host-side costs (image preprocessing on CPU workers, pixel hand-off, per-step host time; "
        "lvlmsim.cost.host): None = on with a serving runtime (its current version), off without; false = off; a "
        "host profile name picks a runtime version")
    api_costs: bool = Field(
        True, description="with host costs on: the OpenAI-API layer per request, prompt tokenisation on the front-end "
        "worker, and each output token's detokenisation + server-sent event (measured, lvlmsim.cost.host); false = off")
    pools: list[PoolSpec] = Field(default_factory=list, description="disaggregated pools; empty = colocated")
    link: LinkConfig | None = Field(None, description="network between pools; default: the hardware's inter-node")

    @model_validator(mode="after")
    def _check(self) -> ServingSpec:
        if self.pools:
            roles = "".join(p.role for p in self.pools)
            if roles != "EPD":
                raise ValueError(
                    f"pools: roles must cover encode, prefill and decode once each, in that order (E+P+D, E+PD, "
                    f"EP+D or EPD); got {'+'.join(p.role for p in self.pools)}"
                )
            labels = [p.label for p in self.pools]
            if len(set(labels)) != len(labels):
                raise ValueError(f"pools: names must be unique, got {labels}")
            _check_pool_degrees(self)
        if self.enforce_eager and self.runtime in (None, "eager"):
            raise ValueError(f"enforce_eager: needs serving.runtime vllm | sglang | trtllm (the engine that runs "
                             f"without CUDA graphs), got runtime {self.runtime}")
        wrong = host_runtime_mismatch(self.host_costs, self.runtime)
        if wrong:
            raise ValueError(f"host_costs: {wrong}")
        if self.encoder_policy == "encode_ahead" and self.scheduler not in ("fcfs", "sarathi"):
            raise ValueError(f"encoder_policy: encode_ahead needs a first-come-first-served queue (scheduler fcfs or "
                             f"sarathi), got scheduler {self.scheduler}: a reordered queue could strand the encoder "
                             "cache on requests that are overtaken")
        if self.max_num_seqs > self.max_num_batched_tokens:
            raise ValueError(
                f"max_num_seqs {self.max_num_seqs} exceeds max_num_batched_tokens {self.max_num_batched_tokens} "
                "(every running sequence needs at least one token per step)"
            )
        return self

    @property
    def encoder_budget(self) -> int:
        return self.encoder_budget_tokens or self.max_num_batched_tokens

    @property
    def encoder_cache(self) -> int:
        return self.encoder_cache_tokens or self.encoder_budget

    def pool_list(self) -> list[PoolSpec]:
        """The pools to build: the configured ones, or one colocated EPD pool of `instances` x `tp`."""
        return list(self.pools) or [PoolSpec(role="EPD", name="EPD", instances=self.instances, tp=self.tp,
                                             ep=self.ep)]


__all__ = ["MAX_INSTANCES", "ROUTERS", "RUNTIME_NAMES", "SCHEDULERS", "LinkConfig", "PoolSpec", "Role", "Router",
           "Runtime", "Scheduler", "ServingSpec"]
