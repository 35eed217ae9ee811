"""The sidebar setup that every page shares, and the uploads of custom specs.

The sidebar is drawn by the entry script before the page runs, so its widgets keep their values across pages (the
same widget instances are rendered on every rerun). Pages read the resulting `Setup` with `current_setup()`.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import streamlit as st

from lvlmsim.errors import LvlmsimError
from lvlmsim.specs import registry

DEFAULTS: dict = {
    "model": "llava-1.5-7b", "hardware": "h100-sxm", "images": 1, "width": 336, "height": 336, "video_s": 0.0,
    "prompt_tokens": 64, "output_tokens": 128, "batch": 1, "tp": 1, "profile": "auto",
    "video_width": 0, "video_height": 0, "video_fps": 0.0,  # the clip as sent; 0 = the model's frame size / no cap
    "ep": 1,  # expert-parallel degree inside the tp group (MoE models only)
}
PROFILES = ("auto", "default", "peak")
# (min, max) of the sidebar's number inputs; the share URL / setup JSON parser (explorer.share) checks the same bounds
BOUNDS: dict[str, tuple] = {
    "images": (0, 64), "width": (1, 16384), "height": (1, 16384), "video_s": (0.0, 3600.0),
    "prompt_tokens": (0, 1_000_000), "output_tokens": (1, 1_000_000), "batch": (1, 4096), "tp": (1, 64), "ep": (1, 64),
    "video_width": (0, 16384), "video_height": (0, 16384), "video_fps": (0.0, 240.0),
}
UPLOAD_KINDS = ("model", "hardware", "scenario", "trace")
# Bad input the user can type or upload: the API raises LvlmsimError; pydantic/ValueError are caught as well so that
# a spec the validators let through still ends as a message, not a traceback.
USER_ERRORS = (LvlmsimError, ValueError)


@dataclass(frozen=True)
class Setup:
    """One request as the sidebar describes it; `kwargs()` is exactly what the pages pass to `lvlmsim.estimate`."""

    model: str
    hardware: str
    images: int
    width: int
    height: int
    video_s: float
    prompt_tokens: int
    output_tokens: int
    batch: int
    tp: int
    profile: str
    techniques: tuple[str, ...] = ()
    video_width: int = 0  # the video as sent (`--video-size WxH`); 0: the model's video policy frame size
    video_height: int = 0
    video_fps: float = 0.0  # its frame rate (`--video-fps`, caps the sampled frames); 0: no cap
    ep: int = 1  # expert-parallel degree (`--ep`) of a MoE model inside the tp group; 1 for a dense model
    moe_skew: float = 0.0  # the router's power-law exponent (`--moe-skew`): the Roofline page's setting

    @property
    def video_size(self) -> tuple[int, int] | None:
        return (self.video_width, self.video_height) if self.video_width and self.video_height else None

    def video_kwargs(self) -> dict:
        """`video_size` / `video_fps` for lvlmsim.estimate, only where a video is sent and they are set."""
        if not self.video_s:
            return {}
        return {**({"video_size": self.video_size} if self.video_size else {}),
                **({"video_fps": self.video_fps} if self.video_fps else {})}

    def kwargs(self) -> dict:
        return {"images": self.images, "image_size": (self.width, self.height), "prompt_tokens": self.prompt_tokens,
                "output_tokens": self.output_tokens, "batch": self.batch, "tp": self.tp,
                **({"ep": self.ep} if self.ep != 1 else {}), **({"moe_skew": self.moe_skew} if self.moe_skew else {}),
                "video_s": self.video_s, **self.video_kwargs(),
                "profile": self.profile, "techniques": list(self.techniques)}

    def with_(self, **changes) -> Setup:
        return replace(self, **changes)

    def python(self) -> str:
        """The call that reproduces this page's estimate from Python."""
        kw = ", ".join(f"{k}={v!r}" for k, v in self.kwargs().items())
        return f"import lvlmsim\nest = lvlmsim.estimate({self.model!r}, {self.hardware!r}, {kw})"

    def as_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------------------------------------- uploads

def _upload_dir() -> Path:
    d = Path(tempfile.gettempdir()) / "lvlmsim-app-uploads"
    d.mkdir(parents=True, exist_ok=True)
    return d


def save_upload(name: str, data: bytes) -> Path:
    """Content-addressed copy: a changed file gets a new path, so no cache (ours or the registry's) serves it stale."""
    digest = hashlib.sha256(data).hexdigest()[:16]
    folder = _upload_dir() / digest
    folder.mkdir(exist_ok=True)
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in Path(name).name) or "upload.yaml"
    path = folder / safe
    path.write_bytes(data)
    return path


def _validator(kind: str) -> Callable[[Path], str]:
    """A function that loads an uploaded file through the package's own loader and returns a short description."""
    if kind == "model":
        def check(p: Path) -> str:
            m = registry.load_model(str(p))
            return f"model '{m.id}' ({m.name})"
    elif kind == "hardware":
        def check(p: Path) -> str:
            h = registry.load_hardware(str(p))
            return f"hardware '{h.id}' ({h.name})"
    elif kind == "scenario":
        def check(p: Path) -> str:
            from lvlmsim.engine.api import load_scenario_model
            from lvlmsim.specs.scenario import load_scenario

            s = load_scenario(str(p))
            load_scenario_model(s)  # an unknown model id was 'loaded' and failed only on Run / Plan
            if not s.hardware.endswith((".yaml", ".yml")) and "/" not in s.hardware:
                registry.load_hardware(s.hardware)
            return f"scenario '{s.id}' ({s.model} on {s.hardware})"
    else:
        def check(p: Path) -> str:
            from lvlmsim.engine.trace import load_trace

            t = load_trace(str(p))
            return f"a trace of {len(t)} requests (replay it on the Serving simulation page)"
    return check


def _on_upload(kind: str) -> None:
    """Validate a new upload before the script reruns, so the selectboxes can pick it in this very rerun."""
    f = st.session_state.get(f"up.{kind}")
    msgs = st.session_state.setdefault("upload_msgs", {})
    if f is None:
        msgs.pop(kind, None)
        return
    path = save_upload(f.name, f.getvalue())
    try:
        desc = _validator(kind)(path)
    except USER_ERRORS as exc:  # the message names the upload as the person knows it, not its saved copy's path
        text = str(exc).replace(f"YAML {path}", str(path)).replace(f"{path}: ", "").replace(str(path), f.name)
        msgs[kind] = ("error", f"{f.name}: {text}")
        return
    uploads = st.session_state.setdefault("uploads", {k: {} for k in UPLOAD_KINDS})
    uploads[kind][str(path)] = f"{f.name} (uploaded)"
    msgs[kind] = ("success", f"{f.name}: loaded {desc}")
    # select what was just uploaded, on every page that can use it (a page's widgets pick it up when drawn)
    for key in {"model": ["sb.model"], "hardware": ["sb.hardware"], "scenario": ["sim.scenario", "plan.scenario"],
                "trace": ["sim.trace"]}[kind]:
        select(key, str(path))


def select(key: str, value) -> None:
    """Set a page widget's value whether or not its page is drawn now (`sticky` restores it from `keep.<key>`).
    Call from a widget callback (before the rerun), never after the widget was drawn."""
    st.session_state[key] = value
    st.session_state[f"keep.{key}"] = value


# ------------------------------------------------------------------------------------------- the sidebar's request

def sidebar_request_label(setup: Setup) -> str:
    sizes = f"{setup.images} x {setup.width}x{setup.height}" + (f", video {setup.video_s:g} s" if setup.video_s else "")
    if setup.video_s and setup.video_size:
        sizes += f" at {setup.video_width}x{setup.video_height}"
    if setup.video_s and setup.video_fps:
        sizes += f" {setup.video_fps:g} fps"
    tech = f", {len(setup.techniques)} technique(s)" if setup.techniques else ""
    ep = f" ep{setup.ep}" if setup.ep != 1 else ""
    return (f"sidebar request: {setup.model} on {setup.hardware} tp{setup.tp}{ep}, {sizes}, "
            f"{setup.prompt_tokens}->{setup.output_tokens} tokens{tech}")


def scenario_from_sidebar(base_ref: str, setup: Setup) -> str:
    """The base scenario (its arrivals, serving policy and SLOs) with the sidebar's request as its workload, saved
    like an upload and selected on the Serving and Planner pages; returns its path. Raises the API's errors."""
    import yaml

    from lvlmsim.specs.request_overrides import with_request
    from lvlmsim.specs.scenario import load_scenario

    sc = with_request(load_scenario(base_ref), model=setup.model, hardware=setup.hardware, tp=setup.tp,
                      image_size=[(setup.width, setup.height)], images=setup.images,
                      prompt_tokens=setup.prompt_tokens, output_tokens=setup.output_tokens, video_s=setup.video_s,
                      techniques=list(setup.techniques), scenario_id="sidebar-request")
    data = sc.model_dump(mode="json", exclude_none=True)
    if setup.ep != 1:  # with_request refused explicit pools for tp already, so `serving` holds the replica's ep
        data["serving"]["ep"] = setup.ep
    video = data["workload"].get("video")
    if video is not None:  # the clip as the sidebar sends it (the scenario's VideoSpec fields)
        if setup.video_size:
            video["width"], video["height"] = setup.video_size
        if setup.video_fps:
            video["source_fps"] = setup.video_fps
    if setup.profile != "auto":
        data["profile"] = setup.profile
    path = save_upload("sidebar-request.yaml", yaml.safe_dump(data, sort_keys=False).encode())
    uploads = st.session_state.setdefault("uploads", {k: {} for k in UPLOAD_KINDS})
    uploads["scenario"][str(path)] = sidebar_request_label(setup)
    for key in ("sim.scenario", "plan.scenario"):
        select(key, str(path))
    return str(path)


def _use_sidebar(select_key: str) -> None:
    """Button callback (runs before the rerun, so it may set the selectboxes): over the page's current scenario."""
    try:
        scenario_from_sidebar(st.session_state.get(select_key) or "llava-chat-h100", current_setup())
        st.session_state.pop("sidebar_request_error", None)
    except USER_ERRORS as exc:
        st.session_state["sidebar_request_error"] = str(exc)


def use_sidebar_button(select_key: str, key: str) -> None:
    """One click: the sidebar's request becomes this page's scenario (over the selected scenario's arrivals, serving
    settings and SLOs)."""
    st.button("Use the sidebar's request", key=key, on_click=_use_sidebar, args=(select_key,),
              help="Model, hardware, TP, EP, images and their size, video, text lengths and techniques from the "
                   "sidebar replace the selected scenario's workload; its arrivals, serving settings and SLOs stay.")
    if st.session_state.get("sidebar_request_error"):
        st.error(st.session_state["sidebar_request_error"])
    stale = stale_sidebar_request(st.session_state.get(select_key), current_setup())
    if stale:
        st.info(stale)


def stale_sidebar_request(selected_ref: str | None, setup: Setup) -> str | None:
    """A notice when the page's scenario is an earlier sidebar request and the sidebar has changed since: the page
    keeps planning the request taken then, which a person reading the sidebar would not expect."""
    taken = uploaded("scenario").get(selected_ref or "")
    now = sidebar_request_label(setup)
    if not taken or not taken.startswith("sidebar request:") or taken == now:
        return None
    return (f"This page uses the {taken}. The sidebar has changed since (now {now.removeprefix('sidebar request: ')});"
            f" press *Use the sidebar's request* to use it.")


def uploaded(kind: str) -> dict[str, str]:
    """path -> label of the valid uploads of this kind."""
    return st.session_state.get("uploads", {}).get(kind, {})


def _label(kind: str) -> Callable[[str], str]:
    return lambda ref: uploaded(kind).get(ref, ref)


# ---------------------------------------------------------------------------------------------------------- sidebar

def _technique_widgets() -> tuple[str, ...]:
    """Technique strings in the `kind:key=value,...` syntax; bad ones are shown as errors and left out."""
    from lvlmsim.techniques import parse_technique

    table = {row[0]: row for row in technique_rows()}
    kinds = st.multiselect("Techniques", list(table), key="sb.tech_kinds",
                           help="Efficiency techniques applied to the request; see `lvlmsim list techniques`.")
    specs: list[str] = []
    for kind in kinds:
        params = st.text_input(f"{kind} parameters", key=f"sb.tech_params.{kind}", value=default_params(table[kind][1]),
                               help=f"key=value,... Parameters: {table[kind][1]}. Source: {table[kind][2]}")
        specs.append(f"{kind}:{params.strip()}" if params.strip() else kind)
    extra = st.text_area("More techniques, one per line", key="sb.tech_extra", height=68,
                         placeholder="kind:key=value,key=value")
    specs += [line.strip() for line in extra.splitlines() if line.strip()]
    good = []
    for s in specs:
        try:
            parse_technique(s)
        except USER_ERRORS as exc:
            st.error(f"{exc} (left out until fixed)")
            continue
        good.append(s)
    return tuple(good)


def technique_rows() -> list[tuple[str, str, str]]:
    """(kind, parameters, citation) per technique, from `lvlmsim.techniques.technique_table()`."""
    from lvlmsim.techniques import technique_table

    rows = []
    for row in technique_table():
        if isinstance(row, dict):
            row = (row.get("kind", ""), row.get("parameters", ""), row.get("citation", ""))
        kind, params, cite = (tuple(str(x) for x in row) + ("", "", ""))[:3]
        rows.append((kind, params, cite))
    return rows


def suggested_techniques(limit: int = 3, setup: Setup | None = None) -> list[str]:
    """A few techniques worth comparing when the user has picked none: their table defaults, ones that parse, one
    per pipeline stage they act on, none claiming what another claims (so every combination composes). With a
    `setup`, only those that run on its model and hardware and change its end-to-end time (a token-pruning method
    on a text-only request, or one the model's architecture refuses, is not suggested)."""
    from lvlmsim.techniques import parse_technique

    base = _e2e(setup) if setup is not None else None
    out, stages, claims = [], set(), set()
    for kind, params, _ in technique_rows():
        text = f"{kind}:{default_params(params)}" if default_params(params) else kind
        try:
            cfg = parse_technique(text)
        except USER_ERRORS:
            continue
        if base is not None:
            e2e = _e2e(setup.with_(techniques=(text,)))
            if e2e is None or abs(e2e - base) <= 1e-9 * base:
                continue
        stage = re.split(r"[^a-z]", str(getattr(cfg, "stage", "")).lower() + " ")[0]  # first stage it names
        claimed = set(getattr(cfg, "claims", tuple)())
        if stage in stages or claimed & claims:
            continue
        out.append(text)
        stages.add(stage)
        claims |= claimed
        if len(out) == limit:
            break
    return out


def _e2e(setup: Setup) -> float | None:
    import lvlmsim

    try:
        return lvlmsim.estimate(setup.model, setup.hardware, **setup.kwargs()).e2e_s
    except USER_ERRORS:
        return None


def default_params(description: str) -> str:
    """Pre-fill a kind's parameter box with the `key=value` defaults its table row lists. Required and unset ones are
    left for the user; of alternatives `a=.. | b=..` (one of them) the first with a default is taken."""
    pairs = []
    for part in description.replace(";", ",").split(","):
        for alt in part.split("|"):
            words = alt.split()
            if not words or "=" not in words[0]:
                continue
            key, _, value = words[0].partition("=")
            value = value.strip("'\"")
            if key and value and value not in ("required", "unset", "None") and not value.startswith(("[", "(")):
                pairs.append(f"{key}={value}")
                break
    return ",".join(pairs)


# Illustrative request shapes (not measurements): a phone photo with a short question; a letter-size page scanned at
# 200 dpi with a longer answer; a half-minute clip; a later turn of a chat that resends two photos with its history.
PRESETS: dict[str, dict] = {
    "chat photo": {"images": 1, "width": 1024, "height": 768, "video_s": 0.0, "prompt_tokens": 80,
                   "output_tokens": 160},
    "documents": {"images": 1, "width": 1700, "height": 2200, "video_s": 0.0, "prompt_tokens": 200,
                  "output_tokens": 400},
    "video": {"images": 0, "video_width": 640, "video_height": 360, "video_fps": 30.0, "video_s": 30.0,
              "prompt_tokens": 40, "output_tokens": 120},
    "multi-turn": {"images": 2, "width": 1024, "height": 768, "video_s": 0.0, "prompt_tokens": 600,
                   "output_tokens": 150},
}


def presets_for(model_ref: str) -> list[str]:
    """The presets this model can run: video only where the model spec has a video policy."""
    try:
        model = registry.load_model(model_ref)
    except USER_ERRORS:
        return list(PRESETS)
    return [p for p in PRESETS if p != "video" or model.video is not None]


def _apply_preset() -> None:
    name = st.session_state.get("sb.preset")
    for k, v in PRESETS.get(name, {}).items():
        st.session_state[f"sb.{k}"] = v


def fixed_resize_note(model_ref: str) -> str | None:
    """A sentence when the model's processor resizes every image to one square, so the chosen size changes nothing."""
    try:
        pol = registry.load_model(model_ref).tokenization
    except USER_ERRORS:
        return None
    if getattr(pol, "kind", None) == "fixed":
        return (f"{model_ref} resizes every image to {pol.image_size}x{pol.image_size} px: the image size set here "
                "does not change its tokens or cost.")
    return None


def moe_experts(model_ref: str) -> int | None:
    """The model's routed experts per MoE layer; None for a dense model (or one that does not load: its error is
    the page's)."""
    try:
        moe = registry.load_model(model_ref).llm.moe
    except USER_ERRORS:
        return None
    return moe.num_experts if moe is not None else None


def _ep_widget(model_ref: str) -> int:
    """The expert-parallel degree, under TP: greyed out for a dense model (its value kept, 1 used). Which degrees
    run (dividing TP and the experts) is the API's check, shown as the page's error."""
    experts = moe_experts(model_ref)
    c1, c2 = st.columns(2)
    help_ = (f"expert-parallel degree (`--ep`): the {experts} experts of each MoE layer split EP ways inside the "
             "TP group; must divide TP and the experts" if experts else
             f"expert parallelism applies to mixture-of-experts models only; {model_ref} is dense, so EP 1 is used")
    ep = c2.number_input("EP", *BOUNDS["ep"], step=1, key="sb.ep", disabled=experts is None, help=help_)
    return int(ep) if experts else 1


MOE_SKEW_MAX = 4.0  # lvlmsim.estimate's bound on moe_skew
MOE_SKEW_HELP = (
    "How unevenly the router spreads tokens over the experts (`lvlmsim.estimate(..., moe_skew=a)`, `--moe-skew`). "
    "0 = balanced: every expert equally likely, so B tokens touch E·(1−(1−k/E)^B) distinct experts. Larger = a few "
    "hot experts take most tokens: expert i (by popularity) is picked with probability ∝ i^−a, the exponent the "
    "shared MoE tables name in their power_law_a routing (1.01, 1.2; a rank law, not their load generator: see "
    "docs/moe.md). A skewed batch touches fewer experts, so a decode step reads fewer expert weights and TPOT "
    "rises more slowly with the batch. 0 to 4; techniques act on the skewed routing's graph.")


def moe_skew_widget(model_ref: str, key: str) -> float:
    """The router skew of a MoE model's decode (a page widget with a sticky `key`, a quarter of the page wide); 0 and
    nothing drawn for a dense model. Its bounds are the API's, so any value it gives is one `lvlmsim.estimate`
    takes."""
    if moe_experts(model_ref) is None:
        return 0.0
    sticky(key, 0.0)
    skew = st.columns(4)[0].number_input("Router skew (MoE)", 0.0, MOE_SKEW_MAX, step=0.1, format="%.2f", key=key,
                           help=MOE_SKEW_HELP)
    keep(key)
    return float(skew)


def _init_defaults() -> None:
    for k, v in DEFAULTS.items():
        st.session_state.setdefault(f"sb.{k}", v)


def sidebar() -> Setup:
    """Draw the shared setup in the sidebar and return it; also stored in session state for the pages. The URL's
    query parameters seed it once per session and are rewritten to it after every run (explorer.share)."""
    from explorer.share import seed_from_url, share_widgets, show_problems, write_url

    seed_from_url()
    _init_defaults()
    sb = st.sidebar
    with sb:
        st.header("Setup")
        models = registry.model_ids() + list(uploaded("model"))
        hws = registry.hardware_ids() + list(uploaded("hardware"))
        model = st.selectbox("Model", models, key="sb.model", format_func=_label("model"))
        hardware = st.selectbox("Hardware", hws, key="sb.hardware", format_func=_label("hardware"))
        st.selectbox("Preset", ["", *presets_for(model)], key="sb.preset", on_change=_apply_preset,
                     format_func=lambda p: p or "choose a request shape…",
                     help="Fills images, size, video and text lengths below; edit them afterwards.")
        images = st.number_input("Images per request", *BOUNDS["images"], step=1, key="sb.images")
        c1, c2 = st.columns(2)
        width = c1.number_input("Image width (px)", *BOUNDS["width"], step=16, key="sb.width")
        height = c2.number_input("Image height (px)", *BOUNDS["height"], step=16, key="sb.height")
        note = fixed_resize_note(model)
        if note:
            st.caption(note)
        video_s = st.number_input("Video seconds (0 = none)", *BOUNDS["video_s"], step=1.0,
                                  key="sb.video_s")
        no_video = not video_s  # the clip's size and fps change nothing without a clip: greyed out, values kept
        c1, c2 = st.columns(2)  # two per row, as the image size: three to a row wrapped every label in three lines
        # 'Video height (px)' and its help icon wrapped to two lines in the half-width column, pushing its box
        # below its neighbour's: the unit is in the help
        video_w = c1.number_input("Video width", *BOUNDS["video_width"], step=16, key="sb.video_width",
                                  disabled=no_video,
                                  help="Pixels. The video as sent (`--video-size`); 0 = the model's video frame size. "
                                       "The model's processor then resizes its frames within its pixel budget.")
        video_h = c2.number_input("Video height", *BOUNDS["video_height"], step=16, key="sb.video_height",
                                  disabled=no_video,
                                  help="Pixels. 0 = the model's video frame size; give both width and height, or "
                                       "neither")
        video_fps = st.number_input("Video fps (0 = no cap)", *BOUNDS["video_fps"], step=1.0, key="sb.video_fps",
                                    disabled=no_video,
                                    help="The clip's own frame rate (`--video-fps`): at most seconds x fps frames "
                                         "can be sampled. 0 = no cap.")
        if not no_video and bool(video_w) != bool(video_h):
            st.error("video size: give both width and height (px), or 0 for both (the model's frame size); "
                     "the one given is ignored until then")
        c1, c2 = st.columns(2)
        prompt = c1.number_input("Prompt tokens", *BOUNDS["prompt_tokens"], step=16, key="sb.prompt_tokens")
        output = c2.number_input("Output tokens", *BOUNDS["output_tokens"], step=16, key="sb.output_tokens")
        c1, c2 = st.columns(2)
        batch = c1.number_input("Batch", *BOUNDS["batch"], step=1, key="sb.batch",
                                help="identical requests processed together")
        tp = c2.number_input("TP", *BOUNDS["tp"], step=1, key="sb.tp", help="tensor-parallel degree")
        ep = _ep_widget(model)
        profile = st.selectbox("Efficiency profile", PROFILES, key="sb.profile",
                               help="auto: the device's calibrated profile if shipped; default: flat roofline "
                                    "derate; peak: datasheet peaks")
        techniques = _technique_widgets()
        with st.expander("Custom model, hardware, scenario or trace"):
            for kind, types in (("model", ["yaml", "yml"]), ("hardware", ["yaml", "yml"]),
                                ("scenario", ["yaml", "yml"]), ("trace", ["csv", "jsonl", "json", "yaml", "yml"])):
                st.file_uploader(f"{kind.capitalize()} file", type=types, key=f"up.{kind}",
                                 on_change=_on_upload, args=(kind,))
                level, msg = st.session_state.get("upload_msgs", {}).get(kind, (None, None))
                if level == "error":
                    st.error(msg)
                elif level == "success":
                    st.success(msg)
    setup = Setup(model=model, hardware=hardware, images=int(images), width=int(width), height=int(height),
                  video_s=float(video_s), prompt_tokens=int(prompt), output_tokens=int(output), batch=int(batch),
                  tp=int(tp), profile=profile, techniques=techniques,
                  video_width=int(video_w) if video_h else 0, video_height=int(video_h) if video_w else 0,
                  video_fps=float(video_fps), ep=int(ep))
    with sb:
        share_widgets(setup)
    show_problems(setup)
    write_url(setup)
    st.session_state["setup"] = setup
    return setup


def sticky(key: str, default) -> str:
    """Give a page widget its last value back after a visit to another page (Streamlit drops the state of widgets
    that were not drawn). Call before drawing the widget with `key=`; call `keep(key)` after."""
    if key not in st.session_state:
        st.session_state[key] = st.session_state.get(f"keep.{key}", default)
    return key


def follow(key: str, default) -> str:
    """`sticky`, for a page widget whose default follows the sidebar (the techniques suggested for this model, B's
    model in A/B): while the person has left it at the default it was given, a new default replaces it. Without
    this, defaults made for the model on the first visit stayed after the sidebar moved to another model, as red
    errors ('token merging is not modelled for ...') that no longer described anything the person chose."""
    mark = f"default.{key}"
    old = st.session_state.get(mark)
    now = st.session_state.get(key, st.session_state.get(f"keep.{key}"))
    if old is not None and old != default and now == old:
        select(key, default)
    st.session_state[mark] = default
    return sticky(key, default)


def keep(*keys: str) -> None:
    for key in keys:
        if key in st.session_state:
            st.session_state[f"keep.{key}"] = st.session_state[key]


def current_setup() -> Setup:
    """The sidebar's setup; a page run on its own (tests) gets the defaults."""
    setup = st.session_state.get("setup")
    if setup is None:
        setup = Setup(**DEFAULTS)
    return setup
