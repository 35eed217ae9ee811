"""Host-side text and API microbenchmarks: what the serving front end's CPU spends per request and per token
outside the GPU. Merged into calibration/host/<name>.json (keys `tokenizer`, `api`), read by lvlmsim.cost.host.

Timed like the kernel suite and the image stages (lvlmsim.calibrate.bench.time_fn: warm-up calls, then repeats until
a count and a time budget are met; median, p10 and p90 kept; fits on the p10, the closest estimate of an uncontended
core on a shared machine), with nothing downloaded and nothing leaving 127.0.0.1:

The cases of one group (encode lengths, detokenise lengths, streamed-token counts) are timed INTERLEAVED, one call
of each per round, for at least 30 rounds and until 10 s are spent (FULL_TEXT): a burst of load from other tenants of
the machine then hits every case of the group alike instead of skewing one, which a case-after-case loop does.

* tokenizer: a byte-level BPE (HF `tokenizers`, the Rust library behind every "fast" tokenizer that vLLM and SGLang
  load) trained here on generated English-like text (a Zipf-distributed lexicon of syllable words with punctuation
  and digits; vocabulary 32000), timed in the calling thread's CPU time (both run on it; wall time on a shared
  machine adds other tenants' load to any call longer than a scheduler slice). `encode` times `Tokenizer.encode` of
  prompts of several lengths, per prompt token;
  `detokenize` times incremental detokenisation with `tokenizers.decoders.DecodeStream.step`, one call per generated
  token (what vLLM V1's fast incremental detokenizer calls), per output token. The chat template (Jinja) is not timed.
* api: an OpenAI-style `POST /v1/chat/completions` with `stream: true` served by uvicorn + Starlette (the ASGI server
  and framework under vLLM's and SGLang's FastAPI servers), the body validated by a pydantic model and each token sent
  as one `data: {chat.completion.chunk JSON}` server-sent event built by pydantic's `model_dump_json`, then
  `data: [DONE]`, timed in the process's CPU time (server thread, client and their loopback TCP work; the wall time
  of the shared machine added other tenants' load: 1.37 ms a request and 67 us a token in wall-time p10s). The
  client is stdlib http.client on a new connection per request, parsing every event with json.loads, as the
  benchmark clients do. The round trip is timed for several streamed-token counts and fitted to
  t = per_request_s + per_token_s * tokens: per_request_s is the request's API cost (connect, HTTP, validation,
  response start, [DONE]), per_token_s one streamed token's (chunk building, write, client parse). Client and server
  share the machine's cores, so these include the client's share, as a benchmark client on the server does.

* api_image_body: the same server and client with one image sent inline, as the benchmark clients send theirs (an
  OpenAI content part `image_url` holding a `data:image/jpeg;base64,...` URL of N encoded bytes, incompressible like
  a JPEG's entropy-coded data) and one streamed token; the server validates the body with pydantic and base64-decodes
  the image, as every OpenAI-compatible server must before it can open the image. Fitted to t = a + b * N over N =
  0 .. 2 MiB: b (per_image_byte_s) is what each encoded byte of an inline image adds to a request's API handling
  (the base64 text over HTTP, JSON parse, validation, base64 decode); a is the text-only request again.

Run: `python -m lvlmsim.calibrate.apicost [calibration/host/cpu-generic.json] [--quick] [--image-body | --tokenizer]`
(needs the `host-measure` extra: tokenizers, uvicorn, starlette). It replaces only the `tokenizer`, `api` and
`api_image_body` sections of that file; `--image-body` measures and replaces only `api_image_body`, `--tokenizer`
only `tokenizer`.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import threading
import time

from lvlmsim.calibrate.bench import TimingPlan, cpu_model
from lvlmsim.calibrate.host import _fit, merge_into

VOCAB = 32000
CORPUS_WORDS = 300_000
PROMPT_TOKENS = (64, 256, 1024, 4096)
OUTPUT_TOKENS = (64, 256, 1024)
STREAM_TOKENS = (1, 32, 128, 512)
IMAGE_BODY_BYTES = (0, 256 << 10, 1 << 20, 2 << 20)  # encoded image bytes sent inline (base64 in a data URL)
QUICK_IMAGE_BODY_BYTES = (0, 1 << 20)
QUICK_STREAM_TOKENS = (1, 64, 256)
SERVER_START_S = 10.0
# Longer than the kernel suite's FULL plan: these cases run for milliseconds on a shared machine, and the p10 needs
# enough repeats to find the uncontended ones. budget_s is for a whole group of interleaved cases.
FULL_TEXT = TimingPlan(warmup=3, min_reps=30, max_reps=400, budget_s=10.0)
QUICK_TEXT = TimingPlan(warmup=1, min_reps=5, max_reps=40, budget_s=1.0)


def time_interleaved(cases: dict, plan: TimingPlan, clock=time.perf_counter) -> dict:
    """{case: (median, p10, p90, reps)} seconds per call, the cases called in turn, one call each per round, timed by
    `clock` (wall time by default; time.thread_time for work that runs on the calling thread alone)."""
    import numpy as np

    for fn in cases.values():
        for _ in range(plan.warmup):
            fn()
    times: dict = {k: [] for k in cases}
    perf = clock
    spent, rounds = 0.0, 0
    while rounds < plan.max_reps and (rounds < plan.min_reps or spent < plan.budget_s):
        for k, fn in cases.items():
            t0 = perf()
            fn()
            dt = perf() - t0
            times[k].append(dt)
            spent += dt
        rounds += 1
    out = {}
    for k, ts in times.items():
        a = np.array(ts)
        out[k] = (float(np.median(a)), float(np.percentile(a, 10)), float(np.percentile(a, 90)), len(ts))
    return out


def _lexicon(rng, n: int = 60000) -> list[str]:
    """Words of 1-4 random syllables: English-like lengths, so BPE learns merges as it would on prose."""
    onsets = "b c d f g h j k l m n p r s t v w br ch cl dr fl gr pl pr sh st th tr".split()
    vowels = "a e i o u ai ea ee ie oo ou".split()
    codas = ["", "", "n", "r", "s", "t", "l", "nd", "st", "ng"]
    words = set()
    while len(words) < n:
        k = int(rng.integers(1, 5))
        words.add("".join(onsets[rng.integers(len(onsets))] + vowels[rng.integers(len(vowels))]
                          + codas[rng.integers(len(codas))] for _ in range(k)))
    return sorted(words)


def corpus(words: int = CORPUS_WORDS, seed: int = 0) -> str:
    """Generated text: Zipf-ranked words, sentence capitals, commas and full stops, some numbers."""
    import numpy as np

    rng = np.random.default_rng(seed)
    lex = _lexicon(rng)
    ranks = np.minimum(rng.zipf(1.2, words), len(lex)) - 1
    out, start = [], True
    for i, r in enumerate(ranks):
        w = lex[int(r)] if i % 29 else str(int(rng.integers(0, 10_000)))
        out.append(w.capitalize() if start else w)
        start = False
        u = rng.random()
        if u < 0.06:
            out[-1] += "."
            start = True
        elif u < 0.12:
            out[-1] += ","
    return " ".join(out)


def train_tokenizer(text: str, vocab: int = VOCAB):
    """A byte-level BPE trained on `text` (no download): the tokenizer family of Qwen, Llama 3 and GPT."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    lines = text.split(". ")
    tok.train_from_iterator((lines[i:i + 1000] for i in range(0, len(lines), 1000)), trainer=trainer)
    return tok


def _text_of(tok, ids_all: list[int], n: int) -> str:
    return tok.decode(ids_all[:n])


def _rows(stats: dict, key: str) -> list[dict]:
    return [{key: n, "measured_s": med, "p10_s": p10, "p90_s": p90, "reps": reps}
            for n, (med, p10, p90, reps) in stats.items()]


def _tokenizer_cases(plan: TimingPlan, quick: bool) -> tuple[dict, object, list[int]]:
    from tokenizers.decoders import DecodeStream

    t0 = time.perf_counter()
    text = corpus(CORPUS_WORDS // 3 if quick else CORPUS_WORDS)
    tok = train_tokenizer(text)
    train_s = time.perf_counter() - t0
    ids_all = tok.encode(text[:400_000]).ids
    prompts = {n: _text_of(tok, ids_all, n) for n in PROMPT_TOKENS}
    # CPU time of the calling thread, where tokenizers' encode and DecodeStream.step run: on the shared 2-core machine
    # the wall time of a call longer than a scheduler slice (1024+ tokens) rarely escapes other tenants, so even its
    # p10 carried their load (4096 tokens 27.6 ms against 6.2 ms of CPU; PROMPT_TOKENS were not linear in wall time)
    enc = time_interleaved({len(tok.encode(p).ids): (lambda p=p: tok.encode(p)) for p in prompts.values()}, plan,
                           clock=time.thread_time)

    def stream(ids):
        ds = DecodeStream(skip_special_tokens=True)
        for i in ids:
            ds.step(tok, i)

    dec = time_interleaved({n: (lambda ids=ids_all[1000:1000 + n]: stream(ids)) for n in OUTPUT_TOKENS}, plan,
                           clock=time.thread_time)
    enc_rows, dec_rows = _rows(enc, "tokens"), _rows(dec, "tokens")
    enc_a, enc_b, enc_err = _fit([(r["tokens"], r["p10_s"]) for r in enc_rows])
    dec_a, dec_b, dec_err = _fit([(r["tokens"], r["p10_s"]) for r in dec_rows])
    return {
        "method": "HF tokenizers byte-level BPE trained locally on generated text (lvlmsim.calibrate.apicost)",
        "timing": "time.thread_time: the CPU time of the calling thread, which runs the encode and decode steps",
        "vocab_size": tok.get_vocab_size(), "train_s": train_s,
        "encode": {"per_request_s": enc_a, "per_token_s": enc_b, "fit_median_abs_error_pct": enc_err,
                   "measurements": enc_rows},
        "detokenize": {"per_request_s": dec_a, "per_token_s": dec_b, "fit_median_abs_error_pct": dec_err,
                       "measurements": dec_rows},
    }, tok, ids_all


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _app(token_texts: list[str]):
    """An OpenAI-style chat-completions endpoint that streams `max_tokens` tokens as SSE chunks."""
    from pydantic import BaseModel
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    class ImageUrl(BaseModel):
        url: str

    class Part(BaseModel):
        type: str
        text: str | None = None
        image_url: ImageUrl | None = None

    class Message(BaseModel):
        role: str
        content: str | list[Part]

    class ChatRequest(BaseModel):
        model: str
        messages: list[Message]
        max_tokens: int
        stream: bool = True
        temperature: float = 0.0

    class Delta(BaseModel):
        content: str | None = None

    class Choice(BaseModel):
        index: int = 0
        delta: Delta
        finish_reason: str | None = None

    class Chunk(BaseModel):
        id: str
        object: str = "chat.completion.chunk"
        created: int
        model: str
        choices: list[Choice]

    async def chat(request: Request):
        req = ChatRequest.model_validate_json(await request.body())
        for m in req.messages:  # inline images: base64-decoded, as a server must before it can open them
            for part in m.content if isinstance(m.content, list) else ():
                if part.image_url is not None:
                    base64.b64decode(part.image_url.url.split(",", 1)[1])
        created = int(time.time())

        async def events():
            n = len(token_texts)
            for i in range(req.max_tokens):
                last = i == req.max_tokens - 1
                c = Chunk(id="chatcmpl-0", created=created, model=req.model,
                          choices=[Choice(delta=Delta(content=token_texts[i % n]),
                                          finish_reason="length" if last else None)])
                yield f"data: {c.model_dump_json(exclude_unset=False)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


def _start_server(app):
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", access_log=False,
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + SERVER_START_S
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            server.should_exit = True
            raise RuntimeError("apicost: the local API server did not start")
        time.sleep(0.01)
    return server, thread, port


def _image_content(prompt: str, image: bytes) -> list[dict]:
    """An OpenAI multi-part user content: the prompt and one inline JPEG data URL of `image`'s bytes."""
    url = "data:image/jpeg;base64," + base64.b64encode(image).decode("ascii")
    return [{"type": "text", "text": prompt}, {"type": "image_url", "image_url": {"url": url}}]


def _body(prompt: str, tokens: int, image: bytes | None = None) -> bytes:
    """A chat-completion request body (with an inline image when given), encoded as a client sends it."""
    content = prompt if image is None else _image_content(prompt, image)
    return json.dumps({"model": "bench", "max_tokens": tokens, "stream": True,
                       "messages": [{"role": "user", "content": content}]}).encode()


def _round_trip(port: int, prompt: str, tokens: int, body: bytes | None = None) -> int:
    """One streamed chat completion over a new connection; returns the tokens received. `body`: a prebuilt request
    (the benchmark clients encode their images before the run), else one built here from `prompt`."""
    import http.client

    body = _body(prompt, tokens) if body is None else body
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", "/v1/chat/completions", body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        got = 0
        for line in resp:
            if not line.startswith(b"data: "):
                continue
            data = line[6:].strip()
            if data == b"[DONE]":
                break
            got += bool(json.loads(data)["choices"][0]["delta"].get("content") is not None)
        return got
    finally:
        conn.close()


def _api_cases(plan: TimingPlan, token_texts: list[str], prompt: str, counts) -> dict:
    server, thread, port = _start_server(_app(token_texts))
    try:
        for n in counts:
            if _round_trip(port, prompt, n) != n:
                raise RuntimeError(f"apicost: the local server streamed a wrong token count for {n}")
        rows = _rows(time_interleaved({n: (lambda n=n: _round_trip(port, prompt, n)) for n in counts}, plan,
                                      clock=time.process_time), "stream_tokens")
    finally:
        server.should_exit = True
        thread.join(timeout=SERVER_START_S)
    a, b, err = _fit([(r["stream_tokens"], r["p10_s"]) for r in rows])
    return {"method": "OpenAI-style streamed chat completion over 127.0.0.1: uvicorn + Starlette + pydantic server, "
                      "http.client client, new connection per request (lvlmsim.calibrate.apicost)",
            "per_request_s": a, "per_stream_token_s": b, "fit_median_abs_error_pct": err,
            "prompt_chars": len(prompt), "measurements": rows}


def _image_body_cases(plan: TimingPlan, token_texts: list[str], prompt: str, sizes) -> dict:
    """Round trips of one streamed token with an inline image of each size (bytes) in `sizes`."""
    server, thread, port = _start_server(_app(token_texts))
    bodies = {n: _body(prompt, 1, os.urandom(n) if n else None) for n in sizes}
    try:
        for n, body in bodies.items():
            if _round_trip(port, prompt, 1, body) != 1:
                raise RuntimeError(f"apicost: the local server answered a wrong token count for a {n}-byte image")
        cases = {n: (lambda body=body: _round_trip(port, prompt, 1, body)) for n, body in bodies.items()}
        rows = _rows(time_interleaved(cases, plan, clock=time.process_time), "image_bytes")
    finally:
        server.should_exit = True
        thread.join(timeout=SERVER_START_S)
    a, b, err = _fit([(r["image_bytes"], r["p10_s"]) for r in rows])
    return {"method": "OpenAI-style chat completion with one inline image (data:image/jpeg;base64 URL of N random "
                      "bytes) over 127.0.0.1, one streamed token: uvicorn + Starlette + pydantic server that "
                      "base64-decodes the image, http.client client sending a body encoded before the run, as "
                      "the benchmark clients encode their images (lvlmsim.calibrate.apicost)",
            "per_request_s": a, "per_image_byte_s": b, "fit_median_abs_error_pct": err,
            "prompt_chars": len(prompt), "measurements": rows}


def measure_image_body(quick: bool = False, token_texts: list[str] | None = None, prompt: str | None = None) -> dict:
    """The `api_image_body` section of a host profile: what each encoded byte of an inline image adds to a request
    (the streamed token texts and the prompt of measure_api when given, else from a small locally trained BPE)."""
    plan = QUICK_TEXT if quick else FULL_TEXT
    t0 = time.perf_counter()
    if token_texts is None or prompt is None:
        tok = train_tokenizer(corpus(20_000))
        ids_all = tok.encode(corpus(20_000, seed=1)).ids
        token_texts, prompt = [tok.decode([i]) for i in ids_all[:256]], _text_of(tok, ids_all, 512)
    doc = _image_body_cases(plan, token_texts, prompt, QUICK_IMAGE_BODY_BYTES if quick else IMAGE_BODY_BYTES)
    doc["environment"] = {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cpu": cpu_model(),
                          "cpu_count": os.cpu_count(), "quick": quick, "wall_s": time.perf_counter() - t0,
                          "statistic": "fits use the p10 of each case (median, p10, p90 kept), cases interleaved"}
    return {"api_image_body": doc}


def measure_tokenizer(quick: bool = False) -> dict:
    """The `tokenizer` section of a host profile alone (see the module docstring)."""
    tok_doc, _tok, _ids = _tokenizer_cases(QUICK_TEXT if quick else FULL_TEXT, quick)
    return {"tokenizer": tok_doc}


def measure_api(quick: bool = False) -> dict:
    """The `tokenizer` and `api` sections of a host profile (see the module docstring)."""
    import pydantic
    import starlette
    import tokenizers
    import uvicorn

    plan = QUICK_TEXT if quick else FULL_TEXT
    t0 = time.perf_counter()
    tok_doc, tok, ids_all = _tokenizer_cases(plan, quick)
    token_texts = [tok.decode([i]) for i in ids_all[:4096]]
    prompt = _text_of(tok, ids_all, 512)
    api_doc = _api_cases(plan, token_texts, prompt, QUICK_STREAM_TOKENS if quick else STREAM_TOKENS)
    env = {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cpu": cpu_model(),
           "cpu_count": os.cpu_count(), "quick": quick, "tokenizers_version": tokenizers.__version__,
           "uvicorn_version": uvicorn.__version__, "starlette_version": starlette.__version__,
           "pydantic_version": pydantic.__version__,
           "timing": {"method": "time.process_time around each round trip (server thread + client), "
                                "time.thread_time around each tokenizer call, the cases of a group interleaved",
                      "warmup": plan.warmup, "min_rounds": plan.min_reps, "max_rounds": plan.max_reps,
                      "budget_s_per_group": plan.budget_s,
                      "statistic": "fits use the p10 of each case (median, p10, p90 kept)"},
           "wall_s": time.perf_counter() - t0}
    return {"tokenizer": tok_doc, "api": api_doc, "api_environment": env,
            **measure_image_body(quick, token_texts, prompt)}


if __name__ == "__main__":  # python -m lvlmsim.calibrate.apicost [HOST.json] [--quick] [--image-body | --tokenizer]
    import sys

    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    target = args[0] if args else "calibration/host/cpu-generic.json"
    quick = "--quick" in sys.argv
    if "--image-body" in sys.argv:
        print(merge_into(target, measure_image_body(quick)))
    elif "--tokenizer" in sys.argv:
        print(merge_into(target, measure_tokenizer(quick)))
    else:
        print(merge_into(target, measure_api(quick)))
