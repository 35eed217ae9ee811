"""What every technique is: a validated config with a citation and a few hooks, and the registry that parses them.

A technique acts on the pipeline through hooks whose defaults do nothing; each technique overrides the one or two
that say how it acts (token schedule, dtypes/bytes of ops, KV bytes, tokenization, or engine behaviour). The graph
never learns technique names: hooks hand it a different GraphConfig, different tokenizations, or extra/modified ops.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lvlmsim.errors import SpecError
from lvlmsim.ops.op import GraphConfig, Op, SeqWork
from lvlmsim.ops.tokenization import ImageTokenization
from lvlmsim.specs.base import no_bools_for_numbers
from lvlmsim.specs.hardware import HardwareSpec
from lvlmsim.specs.lists import split_items
from lvlmsim.specs.model import ModelSpec

# Canonical application order (lower first). Composition sorts by it, so the order a user lists techniques in
# never changes the result.
ORDER_MODEL, ORDER_VIT, ORDER_PRE_LLM, ORDER_IN_LLM = 10, 20, 30, 40
ORDER_WEIGHTS, ORDER_KV, ORDER_KERNEL, ORDER_KV_BUDGET, ORDER_DECODE, ORDER_REUSE = 50, 55, 60, 70, 80, 90

# What each conflict key means, for the message when two techniques claim it.
CLAIMS: dict[str, str] = {
    "resolution_cap": "the tokenization policy caps",
    "tome": "the ViT token-merging schedule",
    "pre_llm_reduction": "the pre-LLM visual token reduction (only one selection step runs on the ViT outputs)",
    "in_llm_schedule": "the in-LLM visual-token schedule (GraphConfig.visual_keep; token_schedule expresses any "
                       "combination)",
    "kv_quant": "the KV-cache dtype",
    "kv_budget": "the KV-cache token budget",
    "attention": "the attention kernel",
    "speculative": "the decode-step policy",
    "reuse": "the encoder/KV reuse cache",
}


# A change of a benchmark score in percentage points lies within -100..100 (the explorer's accuracy editor and the
# technique strings' accuracy_delta both read this bound).
ACCURACY_DELTA_POINTS = (-100.0, 100.0)


class TechniqueConfig(BaseModel):
    """Base of every technique config: `kind`, its parameters, and an optional cited accuracy figure.

    lvlmsim never invents accuracy numbers: `accuracy_delta` (points on the user's benchmark, e.g. -0.8) is reported
    beside the cost only when the user gives it, together with `accuracy_source` (where the figure comes from).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=(), allow_inf_nan=False)

    kind: str
    accuracy_delta: float | None = Field(None, ge=ACCURACY_DELTA_POINTS[0], le=ACCURACY_DELTA_POINTS[1],
                                         description="accuracy change in percentage points, as reported by the source")
    accuracy_source: str | None = Field(None, description="paper/table/run the accuracy_delta comes from")

    citation: ClassVar[str] = ""
    stage: ClassVar[str] = ""  # encode | prefill | decode | memory (where the cost changes)
    acts_on: ClassVar[str] = ""  # one line: what in the pipeline this technique changes
    order: ClassVar[int] = 100

    @model_validator(mode="before")
    @classmethod
    def _numbers_are_not_booleans(cls, data: Any) -> Any:
        return no_bools_for_numbers(cls, data)

    @model_validator(mode="after")
    def _accuracy_needs_source(self) -> TechniqueConfig:
        if self.accuracy_delta is not None and not (self.accuracy_source or "").strip():
            raise ValueError("accuracy_source: required when accuracy_delta is given (cite where the figure comes "
                             "from; lvlmsim does not estimate accuracy)")
        return self

    # ----------------------------------------------------------------------------------------------------------
    # identity

    def params(self) -> dict[str, Any]:
        """Parameters in effect (no kind, no accuracy fields), for reports."""
        return self.model_dump(exclude={"kind", "accuracy_delta", "accuracy_source"})

    def label(self) -> str:
        """'fastv:layer=2,keep=0.5': the CLI spelling of the parameters that differ from their defaults."""
        parts = []
        given = self.model_dump(exclude={"kind", "accuracy_delta", "accuracy_source"}, exclude_defaults=True)
        for k, v in given.items():
            if v is None:
                continue
            if isinstance(v, list | tuple):
                v = "/".join(":".join(str(x) for x in e) if isinstance(e, list | tuple) else str(e) for e in v)
            parts.append(f"{k}={v}")
        return f"{self.kind}:{','.join(parts)}" if parts else self.kind

    @classmethod
    def param_summary(cls) -> list[str]:
        """'name=default' per parameter ('required' / 'unset' where there is no default value)."""
        out = []
        for name in _param_names(cls)[:-2]:
            f = cls.model_fields[name]
            default = "required" if f.is_required() else ("unset" if f.default is None else f"{f.default!r}")
            out.append(f"{name}={default}")
        return out

    def claims(self) -> tuple[str, ...]:
        """Conflict keys: two techniques claiming the same key cannot be composed (SpecError)."""
        return (self.kind,)

    # ----------------------------------------------------------------------------------------------------------
    # hooks (defaults do nothing)

    def check(self, model: ModelSpec, hw: HardwareSpec, tp: int) -> None:
        """Fail early with a message naming the field when this config cannot apply to this model/device."""

    def engine_refusal(self, others: Sequence[TechniqueConfig], model: ModelSpec) -> str | None:
        """Why the serving engine cannot simulate this technique together with `others` on `model` (None when it
        can). Declared by the technique, as `claims()` declares conflicts; the estimate still prices it."""
        return None

    # engine hooks: how a technique acts on the serving engine besides its ops. compose() collects them into the
    # Composition, whose engine-facing methods (kv_policy, admission_cache, reserved_weight_bytes,
    # extra_kv_bytes_per_token, decode_policy) are all lvlmsim.engine calls, so an engine-level technique is one
    # file overriding these (claims() keeps two techniques off the same hook).

    def kv_after_prefill(self) -> Any:
        """The policy deciding which KV a sequence keeps when it starts decoding (kept(), decode_view(); see
        techniques.kv_budget.KVBudgetPolicy), or None to keep it all."""
        return None

    def admission_cache(self) -> Any:
        """The cache looked up when a request is admitted (encoder outputs / image KV; see techniques.reuse), or
        None. Its device bytes are reserved next to the weights."""
        return None

    def decode_step_policy(self, model: ModelSpec, cfg: GraphConfig, transform: Any) -> Any:
        """The decode-step policy (tokens per step, the per-step extra cost of drafting, reserved draft weights and
        KV; see techniques.speculative.DecodeStepPolicy), or None for plain decoding."""
        return None

    def transform_model(self, model: ModelSpec) -> ModelSpec:
        return model

    def transform_config(self, cfg: GraphConfig, model: ModelSpec) -> GraphConfig:
        return cfg

    def transform_tokenization(self, tok: ImageTokenization, model: ModelSpec) -> ImageTokenization:
        return tok

    def vit_tokens_merged_per_layer(self) -> int:
        """ToMe's r; 0 for every other technique."""
        return 0

    def encode_extra_ops(
        self, model: ModelSpec, cfg: GraphConfig, toks: Sequence[ImageTokenization], batch: int
    ) -> list[Op]:
        """Ops the technique adds to the encode stage (e.g. a selection pass over the ViT outputs)."""
        return []

    def prefill_extra_ops(
        self, model: ModelSpec, cfg: GraphConfig, seqs: Sequence[SeqWork], past_visual: Sequence[int]
    ) -> list[Op]:
        """Ops the technique adds to a prefill pass (e.g. the attention scores a pruning step needs)."""
        return []

    def decode_extra_ops(self, model: ModelSpec, cfg: GraphConfig, seqs: Sequence[SeqWork]) -> list[Op]:
        """Ops the technique adds to every decode step (e.g. H2O's score accumulation)."""
        return []

    def transform_ops(self, ops: Sequence[Op], model: ModelSpec, cfg: GraphConfig) -> list[Op]:
        """Modify ops the graph built (e.g. dequantisation FLOPs folded into attention)."""
        return list(ops)

    def notes(self, model: ModelSpec) -> list[str]:
        """One-line explanations printed with the estimate."""
        return []


REGISTRY: dict[str, type[TechniqueConfig]] = {}


def schedule_of(techniques: Sequence[TechniqueConfig]) -> TechniqueConfig | None:
    """The technique that sets an in-LLM visual-token schedule (FastV, PyramidDrop, token_schedule), if any."""
    return next((t for t in techniques if "in_llm_schedule" in t.claims()), None)


def register(cls: type[TechniqueConfig]) -> type[TechniqueConfig]:
    """Class decorator: make a config parseable by its `kind` literal."""
    kind = typing.get_args(cls.model_fields["kind"].annotation)[0]
    REGISTRY[kind] = cls
    return cls


# --------------------------------------------------------------------------------------------------------------
# parsing


def _is_list_field(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (list, tuple):
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_is_list_field(a) for a in typing.get_args(annotation))
    return False


def _param_names(cls: type[TechniqueConfig]) -> list[str]:
    """The technique's own parameters first, then the accuracy fields every technique has."""
    own = [k for k in cls.model_fields if k not in ("kind", "accuracy_delta", "accuracy_source")]
    return own + ["accuracy_delta", "accuracy_source"]


def _allowed(cls: type[TechniqueConfig]) -> str:
    return ", ".join(_param_names(cls))


SHOWN_CHARS = 60  # of a refused value in a message: a 5000-character line was echoed whole in the explorer


def _clip(text: str) -> str:
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "…"


def _unknown_kind(kind: str) -> SpecError:
    close = difflib.get_close_matches(kind, list(REGISTRY), n=3, cutoff=0.5) if len(kind) <= SHOWN_CHARS else []
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return SpecError(f"technique: unknown kind '{_clip(kind)}'.{hint} Allowed kinds: {', '.join(sorted(REGISTRY))}")


def _format_error(cls: type[TechniqueConfig], kind: str, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "kind") or "(parameters)"
        field_name = str(err.get("loc", ("",))[0]) if err.get("loc") else ""
        if err.get("type") == "extra_forbidden":
            close = difflib.get_close_matches(field_name, list(cls.model_fields), n=1, cutoff=0.5)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            lines.append(f"unknown parameter '{field_name}'{hint}; allowed: {_allowed(cls)}")
            continue
        msg = err.get("msg", "invalid value").removeprefix("Value error, ")
        if msg.startswith(f"{loc}:") or loc == "(parameters)" and ":" in msg.split(" ")[0]:
            lines.append(msg)
            continue
        got = err.get("input")
        got_s = f" (got {_clip(repr(got))})" if err.get("type") != "missing" and not isinstance(got, dict) else ""
        lines.append(f"{loc}: {msg}{got_s}")
    return f"technique '{kind}': " + "; ".join(lines)


def validate_technique(data: dict[str, Any]) -> TechniqueConfig:
    """A dict with `kind` and parameters -> the validated config; SpecError names the kind and the field."""
    if not isinstance(data, dict):
        raise SpecError(f"technique: expected a mapping with 'kind', got {type(data).__name__}")
    kind = data.get("kind")
    if not isinstance(kind, str) or not kind:
        raise SpecError(f"technique: missing 'kind'; allowed kinds: {', '.join(sorted(REGISTRY))}")
    cls = REGISTRY.get(kind)
    if cls is None:
        raise _unknown_kind(kind)
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_format_error(cls, kind, exc)) from None


def parse_technique(text: str) -> TechniqueConfig:
    """'fastv:layer=2,keep=0.5' -> FastVConfig. Lists use '/' ('layers=8/16/24'), pairs ':' ('schedule=2:0.5/16:0.25').

    Errors name the kind and the field and list what is allowed.
    """
    if not isinstance(text, str) or not text.strip():
        raise SpecError(f"technique: expected 'KIND:key=value,...', got {text!r}")
    kind, _, rest = text.strip().partition(":")
    kind = kind.strip()
    cls = REGISTRY.get(kind)
    if cls is None:
        raise _unknown_kind(kind)
    data: dict[str, Any] = {"kind": kind}
    for item in split_items(rest, f"technique '{kind}'"):
        key, eq, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or not key:
            raise SpecError(f"technique '{kind}': expected key=value, got '{_clip(item)}'; allowed: {_allowed(cls)}")
        if key in data:
            raise SpecError(f"technique '{kind}': parameter '{_clip(key)}' given twice")
        field = cls.model_fields.get(key)
        if field is not None and _is_list_field(field.annotation):
            data[key] = [tuple(v.split(":")) if ":" in v else v for v in value.split("/") if v]
        else:
            data[key] = value
    return validate_technique(data)


def load_techniques(items: Iterable[TechniqueConfig | str | dict[str, Any]]) -> list[TechniqueConfig]:
    """Configs, 'kind:...' strings (CLI) or dicts (scenario YAML) -> validated configs."""
    if isinstance(items, str | dict | TechniqueConfig):
        items = [items]  # type: ignore[list-item]
    out = []
    for i, it in enumerate(items):
        if isinstance(it, TechniqueConfig):
            out.append(it)
        elif isinstance(it, str):
            out.append(parse_technique(it))
        elif isinstance(it, dict):
            out.append(validate_technique(it))
        else:  # a scenario's `techniques: [5]` read as pydantic's two-branch union dump
            kinds = ", ".join(sorted(REGISTRY))
            raise SpecError(f"techniques.{i}: expected a technique as 'KIND:key=value,...' or a mapping with 'kind', "
                            f"got {_clip(repr(it))} ({type(it).__name__}); allowed kinds: {kinds}")
    return out


def technique_table() -> list[tuple[str, str, str]]:
    """Rows of (kind, parameters, citation) for `lvlmsim list techniques` and the docs."""
    rows = []
    for kind in sorted(REGISTRY, key=lambda k: (REGISTRY[k].order, k)):
        cls = REGISTRY[kind]
        rows.append((kind, ", ".join(cls.param_summary()) + " (+ accuracy_delta, accuracy_source)", cls.citation))
    return rows
