"""The `lvlmsim` command: a thin face over the public API.

Exit status, the same for every command:
  0  done, and the answer is yes (it fits, a configuration meets the SLOs);
  1  done, and the answer is no: `estimate` printed a request that does not fit in memory, `plan` found no
     configuration meeting the SLOs; the report (and --json) is still printed, with the reason;
  2  bad input, or a configuration that cannot run at all (one line on stderr naming the field and the allowed
     values; e.g. `simulate` of a model that does not fit on its GPU, `estimate` past the context length);
  130 interrupted (a sweep keeps what finished).
"""

from __future__ import annotations

import functools
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from lvlmsim.cli.request_flags import PROFILE_CHOICES
from lvlmsim.errors import LvlmsimError, SpecError
from lvlmsim.fmt import band_text, fmt_si, fmt_time


def _click_class(name: str) -> type:
    """Click's exception class `name`, from the click Typer runs on (recent Typer vendors its own copy)."""
    return next(c for c in typer.BadParameter.__mro__ if c.__name__ == name)


_UsageError, _ClickException = _click_class("UsageError"), _click_class("ClickException")


class _OneLineUsageErrors(TyperGroup):
    """Click's own usage errors (a value of the wrong type, an unknown option, a missing argument) as one line on
    stderr with exit status 2, as every other bad input is; Typer printed them as a usage line, a hint and a
    framed box. Everything else keeps Typer's standalone handling."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _UsageError as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # the help is printed already (Typer's own test)
                sys.exit(exc.exit_code)
            where = f" (see {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
            err.print(f"[bold red]error:[/] {escape(exc.format_message())}{escape(where)}", highlight=False,
                      soft_wrap=True)
            sys.exit(exc.exit_code)
        except _ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except typer.Abort:
            sys.stderr.write("Aborted!\n")
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)  # standalone: typer.Exit(n) comes back as n


app = typer.Typer(
    cls=_OneLineUsageErrors,
    name="lvlmsim",
    help="What it costs to serve a vision-language model, on this hardware, under this traffic, and why. "
         "Exit status: 0 yes; 1 answered no (does not fit, no configuration meets the SLOs); 2 bad input or a "
         "configuration that cannot run.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    """The installed distribution's version (the CLI may not import the top-level package: it sits above it)."""
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            text = version("lvlmsim")
        except PackageNotFoundError:
            text = "(not installed: run from a source checkout)"
        sys.stdout.write(f"lvlmsim {text}\n")
        raise typer.Exit()


@app.callback()
def _main_options(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="print the version and exit")] = False,
) -> None:
    """What it costs to serve a vision-language model, on this hardware, under this traffic, and why."""
# Piped output (files, tests, CI logs) is not a terminal: keep tables wide enough that op names are never cut.
out = Console(width=None if sys.stdout.isatty() else 180)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 180)


def user_errors(fn):
    """Turn LvlmsimError (and bad-input ValueErrors from specs) into one line on stderr and exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except LvlmsimError as exc:
            err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


def print_json(doc) -> None:
    from lvlmsim.specs.outputs import strict_json

    sys.stdout.write(strict_json(doc, indent=2, default=_json_default) + "\n")  # no NaN/Infinity: null + a note


def _json_default(o):
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, tuple | set):
        return list(o)
    return str(o)


@app.command()
@user_errors
def estimate(
    model: Annotated[str, typer.Option("--model", "-m", help="model id or path to a model YAML")] = "llava-1.5-7b",
    hardware: Annotated[str, typer.Option("--hardware", "-w", help="hardware id or path to a YAML")] = "h100-sxm",
    images: Annotated[int, typer.Option(help="images per request (0 = text only)")] = 1,
    image_size: Annotated[str | None, typer.Option(
        "--image-size", help="WIDTHxHEIGHT in px (default 336x336)")] = None,
    prompt_tokens: Annotated[int, typer.Option("--prompt-tokens", help="text tokens in the prompt")] = 64,
    output_tokens: Annotated[int, typer.Option("--output-tokens", help="tokens generated")] = 128,
    batch: Annotated[int, typer.Option(help="identical requests processed together")] = 1,
    tp: Annotated[int, typer.Option(help="tensor-parallel degree")] = 1,
    ep: Annotated[int, typer.Option(help="expert-parallel degree of a MoE model (divides --tp)")] = 1,
    moe_skew: Annotated[
        float, typer.Option("--moe-skew", help="MoE router power-law exponent (0 = balanced routing)")
    ] = 0.0,
    video_s: Annotated[float, typer.Option("--video-s", help="seconds of video per request")] = 0.0,
    video_size: Annotated[
        str | None, typer.Option("--video-size", help="WIDTHxHEIGHT of the video as sent (default: the model's)")
    ] = None,
    video_fps: Annotated[
        float | None, typer.Option("--video-fps", help="frame rate of the video as sent (caps the sampled frames)")
    ] = None,
    profile: Annotated[str, typer.Option(help=PROFILE_CHOICES)] = "auto",
    technique: Annotated[
        list[str] | None, typer.Option("--technique", "-t", help="KIND:key=value,... (repeatable)")
    ] = None,
    runtime: Annotated[
        str | None, typer.Option(help="serving runtime: vllm | sglang | trtllm | eager (floor + per-step overhead)")
    ] = None,
    host: Annotated[str | None, typer.Option(
        help="host costs (preprocess stage): off, or a runtime version vllm-v0 | vllm-v1-piecewise | vllm-v1 | "
             "vllm-v1-async | sglang | trtllm (its CUDA-graph mode too); default: on with --runtime")] = None,
    api_costs: Annotated[bool, typer.Option(
        "--api-costs/--no-api-costs", help="with host costs: the API layer, tokenisation and token streaming "
                                           "(measured; lvlmsim.cost.host)")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON document")] = False,
    ops: Annotated[bool, typer.Option("--ops", help="list every op with its numbers")] = False,
    allow_overflow: Annotated[bool, typer.Option(
        "--allow-overflow", help="estimate a request longer than the model's context length anyway")] = False,
    dtype: Annotated[str | None, typer.Option(
        "--dtype", help="run the model in this dtype instead of its released one (e.g. fp32 on a CPU)")] = None,
) -> None:
    """Cost of one request (or a batch) stage by stage, with the roofline bound of each stage.

    Exit 1 when the request does not fit in memory (the report is printed); 2 on bad input or a request longer
    than the model's context length (unless --allow-overflow)."""
    from lvlmsim.api import estimate as run

    if image_size is not None and images == 0:  # the size of no image: taken, and it changed nothing
        raise SpecError(f"--image-size: describes the request's images, but --images is 0 (text only); give "
                        f"--images 1 or more, or leave --image-size out (got {image_size!r})")
    est = run(model, hardware, images=images, image_size=image_size or "336x336", prompt_tokens=prompt_tokens,
              output_tokens=output_tokens, batch=batch, tp=tp, video_s=video_s, profile=profile,
              techniques=tuple(technique or ()), runtime=runtime, ep=ep, moe_skew=moe_skew,
              video_size=video_size, video_fps=video_fps, allow_overflow=allow_overflow,
              host=False if host is not None and host.strip().lower() == "off" else host, api_costs=api_costs,
              dtype=dtype)
    if as_json:
        doc = est.to_dict()
        if ops:
            doc["ops"] = est.op_rows()
        print_json(doc)
    else:
        _print_estimate(est, ops)
    if not est.memory.fits:
        raise typer.Exit(1)


def _print_estimate(est, ops: bool) -> None:
    ep_txt = f", ep={est.ep}" if est.ep > 1 else ""
    kind = est.provenance.get("profile_kind")
    t = Table(title=f"{est.model_id} on {est.hardware_id} (tp={est.tp}{ep_txt}, batch={est.batch}, "
                    f"profile={est.profile}{', ' + kind if kind else ''})")
    for col in ("stage", "time", "FLOPs", "bytes", "bound", "visual share of FLOPs"):
        t.add_column(col, justify="right" if col not in ("stage", "bound") else "left")
    for name, s in est.stages.items():
        t.add_row(name, fmt_time(s.time_s), fmt_si(s.flops, "FLOP"), fmt_si(s.bytes, "B"), s.bound,
                  f"{s.visual_flops_share:.0%}")
    out.print(t)
    out.print(f"visual tokens: {est.visual_tokens} (ViT tokens: {est.vit_tokens}); prompt {est.prompt_tokens}, "
              f"output {est.output_tokens}")
    out.print(f"TTFT {fmt_time(est.ttft_s)}  TPOT {fmt_time(est.tpot_s)}  E2E {fmt_time(est.e2e_s)}")
    out.print(band_text(est.band_keys()))
    if est.params_active_per_token < est.params_total:
        out.print(f"params: {est.params_total / 1e9:.2f} B total, {est.params_active_per_token / 1e9:.2f} B active "
                  f"per token")
    mem = est.memory
    beyond = (f" ({mem.kv_bytes_per_token_beyond_window / 1024:.0f} KiB/token past the local window)"
              if mem.kv_bytes_per_token_beyond_window < mem.kv_bytes_per_token else "")
    out.print(f"memory: weights {mem.weights_bytes / 2**30:.2f} GiB, KV {mem.kv_bytes_per_token / 1024:.0f} KiB/token"
              f"{beyond}; {mem.verdict}")
    for note in est.notes:
        if note != mem.verdict:
            out.print(f"note: {note}")
    if ops:
        ot = Table(title="ops (time = all calls of the op in that stage)")
        for col in ("stage", "op", "kind", "calls", "FLOPs", "bytes", "FLOP/B", "time", "bound", "source"):
            ot.add_column(col)
        for r in est.op_rows():
            ot.add_row(r["stage"], r["op"], r["kind"], str(r["count"]), fmt_si(r["flops"], ""), fmt_si(r["bytes"], "B"),
                       f"{r['intensity']:.1f}", fmt_time(r["time_s"]), r["bound"], r["source"])
        out.print(ot)


def _source_head(source: str, width: int = 60) -> str:
    """The first clause of a spec's source (its primary document), short enough for a table cell."""
    head = source.split(" (")[0].split(";")[0].strip()
    return head if len(head) <= width else head[: width - 3] + "..."


@app.command("list")
@user_errors
def list_cmd(
    what: Annotated[str, typer.Argument(help="models | hardware | techniques | scenarios | runtimes")],
) -> None:
    """List known ids with one-line descriptions."""
    from lvlmsim.specs import registry

    kinds = ("models", "hardware", "techniques", "scenarios", "runtimes")
    if what not in kinds:
        raise LvlmsimError(f"list: unknown kind '{what}'; allowed: {', '.join(kinds)}")
    t = Table(show_header=True)
    if what == "models":
        t.add_column("id")
        t.add_column("description")
        for mid in registry.model_ids():
            m = registry.load_model(mid)
            if m.vision is None:
                t.add_row(mid, f"{m.name}: text-only {m.llm.name}")
            else:
                t.add_row(mid, f"{m.name}: {m.vision.name} + {m.projector.kind} + {m.llm.name}, "
                               f"{m.tokenization.kind} tokenization")
    elif what == "hardware":
        for col in ("id", "kind", "name", "bf16 TFLOP/s", "GB/s", "GiB", "$/h", "source"):
            t.add_column(col)
        for hid in registry.hardware_ids():
            h = registry.load_hardware(hid)
            peak = h.peak_tflops.get("bf16", h.peak_tflops.get("fp32", 0.0))
            t.add_row(hid, h.kind, h.name, f"{peak:g}", f"{h.mem_bw_gbps:g}", f"{h.mem_capacity_gib:g}",
                      f"{h.price_per_hour_usd:.2f}", _source_head(h.source))
    elif what == "scenarios":
        from lvlmsim.specs.request_overrides import describe_workload
        from lvlmsim.specs.scenario import load_scenario

        for col in ("id", "model", "hardware", "workload", "description"):
            t.add_column(col)
        for sid in registry.scenario_ids():
            sc = load_scenario(sid)
            t.add_row(sid, sc.model, sc.hardware, describe_workload(sc), " ".join(sc.description.split()))
    elif what == "techniques":
        from lvlmsim.techniques import technique_table

        for col in ("kind", "parameters", "citation"):
            t.add_column(col)
        for row in technique_table():
            t.add_row(*row)
    else:
        from lvlmsim.cost.runtime import RUNTIMES

        for col in ("runtime", "kernel floor", "step overhead", "source"):
            t.add_column(col)
        for name, rt in RUNTIMES.items():
            t.add_row(name, fmt_time(rt.kernel_floor_s), fmt_time(rt.step_overhead_s), rt.source)
        out.print(t)
        t = _host_profile_table()
    out.print(t)


def _server_defaults_text(rule: dict | None) -> str:
    """runtimes.yaml server_defaults in one line: the knobs every device gets, by device name, then by memory
    tier."""
    if not rule:
        return "-"

    def knobs(k: dict) -> str:
        return "/".join(str(v) for v in k.values())

    always = ", ".join(f"{k} {v}" for k, v in (rule.get("always") or {}).items())
    tiers = rule.get("tiers") or []
    if not tiers:
        return always or "-"
    keys = next(iter(tiers))["knobs"].keys()
    parts = [f"{n}: {knobs(k)}" for n, k in (rule.get("names") or {}).items()]
    parts += [f"{'< ' + str(t['below_gib']) + ' GiB' if t.get('below_gib') else 'else'}: {knobs(t['knobs'])}"
              for t in tiers]
    return (f"{always}; " if always else "") + f"{' / '.join(keys)}: " + "; ".join(parts)


def _host_profile_table() -> Table:
    """Host-side costs by runtime version (the `preprocess` stage; lvlmsim.cost.host)."""
    from lvlmsim.cost.host import load_host_profile
    from lvlmsim.specs.base import read_yaml
    from lvlmsim.specs.registry import host_dir

    t = Table(show_header=True, title="host costs by runtime version (--host, serving.host_costs)")
    for col in ("profile", "versions", "step host", "workers", "pixels", "bench server defaults",
                "source of the step time"):
        t.add_column(col)
    runtimes = read_yaml(host_dir() / "runtimes.yaml")["runtimes"]
    for name, doc in runtimes.items():
        h = load_host_profile(name)
        t.add_row(name, h.versions, fmt_time(h.step_host_s), str(h.preprocess_workers), h.transfer,
                  _server_defaults_text(doc.get("server_defaults")),
                  " ".join(str(h.sources.get("step_host_s", "")).split()))
    api = h.api
    if api is not None:  # measured per CPU, the same for every runtime (lvlmsim.calibrate.apicost)
        t.caption = (f"every runtime, measured on {h.cpu} (--no-api-costs, serving.api_costs): API "
                     f"{fmt_time(api.request_s)} per request, detokenise + SSE {fmt_time(api.token_out_s)} per output "
                     f"token, tokenise {fmt_time(api.encode(1000))} per 1000 prompt tokens, inline image "
                     f"{fmt_time(api.image_byte_s * 1e6)} per MB")
    return t


@app.command("import-hf")
@user_errors
def import_hf(
    config: Annotated[str, typer.Argument(help="a transformers config.json")],
    output: Annotated[str | None, typer.Option("--output", "-o", help="write the model YAML here")] = None,
    model_id: Annotated[
        str | None, typer.Option("--id", help="id of the imported model (default: from the config's name/folder)")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="replace --output if it exists (refused otherwise)")] = False,
) -> None:
    """Turn a transformers config.json (LLaVA, LLaVA-NeXT, Qwen2/2.5/3-VL incl. MoE, Llama-3.2-Vision, InternVL)
    into a model YAML."""
    from lvlmsim.importers.hf import import_hf_to_yaml

    if output is not None:  # before the import: a refused path must not look like a bad config
        from lvlmsim.specs.outputs import check_out_file, refuse_to_replace

        refuse_to_replace([check_out_file(output, (".yaml", ".yml"), "--output")], "--output", force)
    text = import_hf_to_yaml(config, model_id=model_id)
    if output is not None:
        from lvlmsim.specs.outputs import atomic_write_text

        atomic_write_text(output, text)
        err.print(f"wrote {output}")
    else:
        sys.stdout.write(text)


def _register_commands() -> None:
    """Each command group lives in its own module of this package and adds itself to `app`; an import error in one
    of them is a bug and fails loudly."""
    from lvlmsim.cli import app_cmd, bench, calibrate, planner, simulate

    for module in (calibrate, simulate, bench, planner, app_cmd):
        module.register(app)


_register_commands()


def main() -> None:
    app()
