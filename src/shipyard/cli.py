"""The ``shipyard`` command: parse arguments, call the library, print the result."""

from __future__ import annotations

import asyncio
import gc
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from shipyard import __version__, eventloop
from shipyard.config import LOG_LEVELS, ServerConfig
from shipyard.errors import ShipyardError
from shipyard.log import configure_logging

__all__ = ["main"]

# soft_wrap: URLs and commands stay on one line when the output is not a terminal.
console = Console(stderr=False, highlight=False, soft_wrap=True)


_F = TypeVar("_F", bound=Callable[..., Any])

#: The accuracy guard's options, shared by ``optimize`` and ``tune`` (same names, same rules).
_GUARD_OPTIONS = (
    click.option("--calibration", type=click.Path(path_type=Path), help="int8-static data (.npz)."),
    click.option("--validation", type=click.Path(path_type=Path), help="Guard data (.npz)."),
    click.option(
        "--metric",
        type=click.Choice(["accuracy", "top1-agreement", "cosine", "max-abs"]),
        help="Accuracy guard metric [default: accuracy with labels, else top1-agreement/cosine].",
    ),
    click.option("--max-drop", type=click.FloatRange(0), default=0.01, show_default=True),
)


def _guard_options(command: _F) -> _F:
    """Add the accuracy guard's options to ``command``, in help order."""
    for option in reversed(_GUARD_OPTIONS):
        command = option(command)
    return command


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def _shapes(specs: list[dict[str, Any]]) -> str:
    return ", ".join(f"{s['name']} {s['datatype']}{s['shape']}" for s in specs) or "-"


def print_model_table(rows: list[dict[str, Any]]) -> None:
    """Print the models table (name, versions, state, inputs, outputs)."""
    table = Table(title="Models", title_justify="left")
    for column in ("name", "versions", "state", "inputs", "outputs"):
        table.add_column(column)
    for row in rows:
        state = row["state"] if not row.get("reason") else f"{row['state']}: {row['reason']}"
        table.add_row(
            row["name"],
            ", ".join(row["versions"]) or "-",
            state,
            _shapes(row["inputs"]),
            _shapes(row["outputs"]),
        )
    if not console.is_terminal:  # logs and pipes: one line per model, not 80-column wraps
        console.width = max(console.width, 160)
    console.print(table)


@click.group()
@click.version_option(__version__, prog_name="shipyard")
def main() -> None:
    """Shipyard: serve trained models over the Open Inference Protocol (KServe V2)."""


@main.command()
@click.argument("repository", type=click.Path(path_type=Path))
@click.option("--host", default=None, help="Address to listen on [default: 127.0.0.1].")
@click.option(
    "--http-port", type=int, default=None, help="HTTP port; 0 picks a free one [default: 8000]."
)
@click.option(
    "--grpc-port", type=int, default=None, help="gRPC port; 0 turns gRPC off [default: 8001]."
)
@click.option("--model", "models", multiple=True, help="Load only this model (repeatable).")
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="A TOML file with a [server] table.",
)
@click.option(
    "--max-request-bytes", type=int, default=None, help="Largest request body [default: 64 MiB]."
)
@click.option(
    "--drain-timeout",
    "drain_timeout_s",
    type=float,
    default=None,
    help="Seconds in-flight requests get on shutdown [default: 30].",
)
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS),
    default=None,
    help="Log verbosity [default: info].",
)
def serve(repository: Path, config_file: Path | None, **flags: Any) -> None:
    """Serve every model in REPOSITORY over HTTP and gRPC until SIGINT/SIGTERM."""
    from shipyard.server.app import ShipyardServer

    flags["models"] = flags["models"] or None
    try:
        config = ServerConfig.resolve(config_file, flags={"repository": repository, **flags})
    except ShipyardError as exc:
        _fail(exc.message)
    configure_logging(config.log_level)

    def ready(info: Any) -> None:
        console.print(f"Shipyard {__version__} serving {config.repository}")
        console.print(
            f"  HTTP  {info.http_url}   (Open Inference Protocol v2, metrics at /metrics)"
        )
        if info.grpc_url:
            console.print(f"  gRPC  {info.grpc_url}   (inference.GRPCInferenceService)")
        print_model_table(info.models)
        name = next((r["name"] for r in info.models if r["versions"]), "<model>")
        console.print(f"Try: curl {info.http_url}/v2/models/{name}")
        console.print("Press Ctrl-C to stop.")
        # What is loaded by now lives as long as the process: keep it out of the cyclic GC's
        # scans, or each full collection walks it again, stalling requests for tens of ms
        # under load (benchmarks/RESULTS.md, "Where the time goes").
        gc.freeze()

    server = ShipyardServer(config)
    try:
        eventloop.run(server.serve(on_ready=ready))
    except ShipyardError as exc:
        _fail(exc.message)
    except KeyboardInterrupt:
        pass


@main.group()
def repo() -> None:
    """Inspect a model repository."""


@repo.command("list")
@click.argument("repository", type=click.Path(path_type=Path))
def repo_list(repository: Path) -> None:
    """Load every model in REPOSITORY (without serving) and print their table."""
    from shipyard.server.app import describe_repository

    try:
        rows = asyncio.run(describe_repository(ServerConfig(repository=repository)))
    except ShipyardError as exc:
        _fail(exc.message)
    print_model_table(rows)


@main.command("convert")
@click.argument("source")
@click.option("--name", required=True, help="Model name in the repository.")
@click.option("--repo", "repo_path", required=True, type=click.Path(path_type=Path))
@click.option(
    "--framework",
    type=click.Choice(["torch", "keras", "tensorflow", "sklearn", "onnx"]),
    help="Source framework [default: detected from SOURCE].",
)
@click.option("--to", type=click.Choice(["onnx", "tflite"]), default="onnx", show_default=True)
@click.option(
    "--quantize",
    type=click.Choice(["float32", "int8"]),
    default="float32",
    show_default=True,
    help="TFLite weights; int8 calibrates on --sample.",
)
@click.option("--input", "inputs", multiple=True, help="NAME:DATATYPE:DIMS, e.g. x:FP32:-1,4.")
@click.option("--sample", type=click.Path(path_type=Path), help="Parity inputs (.npz).")
@click.option("--opset", type=click.IntRange(7), help="ONNX opset [default: the exporter's].")
@click.option("--trust-pickle", is_flag=True, help="Allow loading pickle/joblib files.")
@click.option("--weights", type=click.Path(path_type=Path), help="State dict for a factory.")
@click.option("--exporter", type=click.Choice(["dynamo", "legacy"]), help="PyTorch exporter.")
@click.option("--allow-mismatch", is_flag=True, help="Publish even if parity fails.")
@click.option("--atol", type=float, help="Parity abs. tol. [default: 1e-4; int8: 5% of range]")
@click.option("--rtol", type=float, help="Parity rel. tol. [default: 1e-3; int8: 0.05]")
@click.option("--verbose", is_flag=True, help="Show the full converter error.")
def convert_command(
    source: str,
    repo_path: Path,
    atol: float | None,
    rtol: float | None,
    verbose: bool,
    **options: Any,
) -> None:
    """Convert SOURCE to ONNX or TFLite, check parity, publish REPO/NAME/<next version>/."""
    from shipyard.convert import Tolerances, convert
    from shipyard.convert.render import print_report
    from shipyard.convert.validate import INT8_TOLERANCES
    from shipyard.errors import ConversionError, ParityError

    default = INT8_TOLERANCES if options["quantize"] == "int8" else Tolerances()
    tolerances = Tolerances(
        default.atol if atol is None else atol,
        default.rtol if rtol is None else rtol,
        default.range_relative,
    )
    try:
        with console.status("converting...") as status:
            result = convert(
                source,
                repo=repo_path,
                tolerances=tolerances,
                progress=lambda text: status.update(f"{text}..."),
                **options,
            )
    except ParityError as exc:
        print_report(console, exc.report)
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except ConversionError as exc:
        if verbose and exc.detail:
            click.echo(exc.detail, err=True)
        _fail(str(exc))
    except ShipyardError as exc:
        _fail(exc.message)
    except Exception as exc:  # a converter bug we did not anticipate: still one line
        if verbose:
            console.print_exception()
        _fail(f"conversion failed: {type(exc).__name__}: {exc}; rerun with --verbose for details")
    print_report(console, result.report)
    console.print(f"published {result.path} (version {result.version})")


@main.command("hw")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def hw_command(as_json: bool) -> None:
    """Report this machine as the optimizer sees it: CPU, memory, GPUs, providers, precisions."""
    import json

    from shipyard.hardware import probe
    from shipyard.optimize.report import print_hardware

    report = probe()
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        print_hardware(console, report)


@main.command("optimize")
@click.argument("target", metavar="REPO/NAME")
@click.option("--version", "version", type=click.IntRange(1), help="Version [default: latest].")
@click.option(
    "--quantize",
    "method",
    type=click.Choice(["none", "int8-dynamic", "int8-static", "fp16"]),
    default="none",
    show_default=True,
    help="none: graph optimization only.",
)
@_guard_options
@click.option("--force", is_flag=True, help="Publish even if not faster or smaller.")
@click.option("--per-tensor", is_flag=True, help="Quantize weights per tensor, not per channel.")
@click.option(
    "--graph-level", type=click.Choice(["basic", "extended"]), default="extended", show_default=True
)
@click.option(
    "--bench-seconds",
    type=click.FloatRange(0.05),
    default=1.0,
    show_default=True,
    help="Seconds per benchmark phase (latency, throughput) and round.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def optimize_command(
    target: str, per_tensor: bool, bench_seconds: float, as_json: bool, **options: Any
) -> None:
    """Optimize REPO/NAME, guard accuracy and speed, publish it as the next version."""
    import json

    from shipyard.errors import ConversionError
    from shipyard.optimize import BenchmarkSettings, optimize
    from shipyard.optimize.report import print_optimization

    repo_path, _, name = target.rstrip("/").rpartition("/")
    if not repo_path or not name:
        _fail(f"expected REPO/NAME (e.g. models/resnet), got {target!r}")
    settings = BenchmarkSettings(latency_seconds=bench_seconds, throughput_seconds=bench_seconds)
    try:
        with console.status("optimizing...") as status:
            result = optimize(
                Path(repo_path),
                name,
                per_channel=not per_tensor,
                benchmark=settings,
                progress=lambda text: status.update(f"{text}..."),
                **options,
            )
    except ConversionError as exc:
        _fail(str(exc))
    except ShipyardError as exc:
        _fail(exc.message)
    except Exception as exc:  # a tool bug we did not anticipate: still one line
        _fail(f"optimization failed: {type(exc).__name__}: {exc}")
    if as_json:
        click.echo(json.dumps({"published": result.published, **result.report}, indent=2))
    else:
        print_optimization(console, result.report)
        if result.published:
            console.print(f"published {result.path} (version {result.version})")
    if not result.published:
        click.echo(f"error: {result.report['decision']}", err=True)
        sys.exit(1)


#: Content type sent by ``shipyard predict``, by file extension (others: octet-stream).
PREDICT_CONTENT_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".bmp": "image/bmp",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".txt": "text/plain; charset=utf-8",
    ".json": "application/json",
}


@main.command("predict")
@click.argument("url")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--model", required=True, help="Model name.")
@click.option("--model-version", help="Model version [default: the latest served].")
@click.option("--top-k", type=click.IntRange(1), help="Classes per answer [default: server's].")
@click.option("--timeout", type=float, default=30.0, show_default=True, help="Seconds per file.")
def predict_command(
    url: str,
    files: tuple[Path, ...],
    model: str,
    model_version: str | None,
    top_k: int | None,
    timeout: float,
) -> None:
    """Send each FILE (image, .txt, .json) to URL's /predict route and print the answers."""
    import json
    import urllib.error
    import urllib.request

    route = f"{url.rstrip('/')}/v2/models/{model}"
    route += f"/versions/{model_version}/predict" if model_version else "/predict"
    if top_k is not None:
        route += f"?top_k={top_k}"
    table = Table(title=f"{model} predictions", title_justify="left")
    for column in ("file", "#", "label", "score", "top-k / output"):
        table.add_column(column)
    for path in files:
        try:
            body = path.read_bytes()
        except OSError as exc:
            _fail(f"cannot read {path}: {exc.strerror or exc}")
        content_type = PREDICT_CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")
        request = urllib.request.Request(
            route, data=body, method="POST", headers={"Content-Type": content_type}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                answer = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read()).get("error", exc.reason)
            except ValueError:
                message = exc.reason
            _fail(f"{path}: server answered {exc.code}: {message}")
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            _fail(f"cannot reach {url}: {reason}; is `shipyard serve` running there?")
        for i, item in enumerate(answer.get("predictions", [])):
            if "label" in item:
                others = ", ".join(
                    f"{t['label']} {t['score']:.4f}" for t in item.get("top_k", [])[1:]
                )
                score = item.get("score")
                shown = "-" if score is None else f"{score:.4f}"
                table.add_row(str(path), str(i), str(item["label"]), shown, others)
            elif "embedding" in item:
                vector = item["embedding"]
                head = ", ".join(f"{v:.4f}" for v in vector[:4])
                table.add_row(str(path), str(i), "-", "-", f"embedding[{len(vector)}] {head}, ...")
            else:
                table.add_row(str(path), str(i), "-", "-", json.dumps(item)[:120])
    console.print(table)


@main.command("bench")
@click.argument("url")
@click.option("--model", required=True, help="Model name on the server.")
@click.option(
    "--version", "model_version", default=None, help="Model version [default: the server's]."
)
@click.option(
    "--protocol",
    type=click.Choice(["http", "grpc"]),
    default=None,
    help="[default: grpc for grpc:// URLs, else http]",
)
@click.option("--binary", is_flag=True, help="HTTP: binary tensors in and out instead of JSON.")
@click.option(
    "--concurrency",
    default=None,
    metavar="N[,N...]",
    help="Requests in flight (closed loop), or the max outstanding with --rate "
    "[default: 1,8,64; 64 with --rate].",
)
@click.option("--rate", default=None, metavar="R[,R...]", help="Open loop: requests/s.")
@click.option("--duration", type=float, default=10.0, show_default=True, help="Seconds per row.")
@click.option("--warmup", type=float, default=1.0, show_default=True, help="Seconds not recorded.")
@click.option(
    "--input",
    "arrays_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="A .npz whose arrays, named after the inputs, are sent as they are.",
)
@click.option("--shape", "shapes", multiple=True, metavar="NAME:DIMS", help="e.g. input:1,1,28,28.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of a table.")
def bench_command(
    url: str,
    model: str,
    model_version: str | None,
    protocol: str | None,
    concurrency: str | None,
    rate: str | None,
    shapes: tuple[str, ...],
    as_json: bool,
    **options: Any,
) -> None:
    """Load-test MODEL on any Open Inference Protocol server at URL (see docs/bench.md)."""
    import json

    from shipyard.loadgen.bench import BenchPlan, run_bench
    from shipyard.loadgen.inputs import parse_shapes
    from shipyard.loadgen.report import bench_table, error_lines

    def numbers(text: str, kind: type[int] | type[float], flag: str) -> tuple[Any, ...]:
        try:
            return tuple(kind(part) for part in text.split(","))
        except ValueError:
            _fail(f"{flag} {text!r}: expected comma-separated numbers, e.g. 1,8,64")
            raise  # unreachable: _fail exits

    rates = numbers(rate, float, "--rate") if rate else ()
    levels = numbers(concurrency, int, "--concurrency") if concurrency else None
    if protocol is None:
        protocol = "grpc" if url.startswith("grpc://") else "http"
    elif protocol == "http" and url.startswith("grpc://"):
        _fail(f"{url} is a gRPC URL; pass --protocol grpc or an http:// URL")
    status = Console(stderr=True, highlight=False)
    try:
        plan = BenchPlan(
            url=url,
            model=model,
            version=model_version,
            protocol=protocol,
            concurrency=levels or ((64,) if rates else (1, 8, 64)),
            rates=rates,
            duration_s=options["duration"],
            warmup_s=options["warmup"],
            binary=options["binary"],
            arrays_file=options["arrays_file"],
            shapes=parse_shapes(shapes),
        )
        with status.status("connecting...") as spinner:
            result = run_bench(plan, progress=lambda text: spinner.update(f"{text}..."))
    except ShipyardError as exc:
        _fail(exc.message)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    console.print(bench_table(result))
    for line in error_lines(result):
        console.print(line, markup=False)


@main.command("tune")
@click.argument("target", metavar="REPO/NAME")
@click.option("--version", "version", type=click.IntRange(1), help="Version [default: latest].")
@click.option("--slo-p99-ms", type=float, help="Latency target: p99 in ms [default: none].")
@click.option(
    "--concurrency",
    "concurrency",
    multiple=True,
    metavar="N[,N...]",
    help="Requests in flight to measure at (repeatable)"
    " [default: 1,8,64; 1,8 for a budget under 1 minute].",
)
@click.option("--budget-minutes", type=float, default=5.0, show_default=True)
@click.option(
    "--duration", type=float, default=2.0, show_default=True, help="Seconds per measured point."
)
@click.option(
    "--variants",
    default="fp32,optimized,int8-static,int8-dynamic,fp16",
    show_default=True,
    help="Model variants to compare (fp32 is always measured).",
)
@_guard_options
@click.option(
    "--input",
    "input_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="A .npz of request inputs, as `shipyard bench --input`.",
)
@click.option(
    "--report-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where tune-report.json/.html go [default: the model folder].",
)
@click.option("--force", is_flag=True, help="Write the best found even if it misses the SLO.")
@click.option("--dry-run", is_flag=True, help="Measure and report; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def tune_command(
    target: str,
    concurrency: tuple[str, ...],
    budget_minutes: float,
    duration: float,
    variants: str,
    input_file: Path | None,
    as_json: bool,
    **options: Any,
) -> None:
    """Tune REPO/NAME's variant and serving settings by serving them (see docs/tune.md)."""
    import json

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from shipyard.tuning import TuneSettings, tune
    from shipyard.tuning.report import print_tune

    repo_path, _, name = target.rstrip("/").rpartition("/")
    if not repo_path or not name:
        _fail(f"expected REPO/NAME (e.g. models/resnet), got {target!r}")
    try:
        levels = tuple(int(part) for text in concurrency for part in text.split(",") if part)
    except ValueError:
        _fail(f"--concurrency {','.join(concurrency)!r}: expected integers, e.g. 1,8,64")
    status = Console(stderr=True, highlight=False)
    try:
        settings = TuneSettings(
            concurrency=levels,
            budget_s=budget_minutes * 60,
            duration_s=duration,
            variants=tuple(v.strip() for v in variants.split(",") if v.strip()),
            input_file=input_file,
            **options,
        )
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=24),
            TimeElapsedColumn(),
            console=status,
            transient=True,
            refresh_per_second=4,
        ) as bar:
            task = bar.add_task("tuning", total=settings.budget_s)

            def show(p: Any) -> None:
                bar.update(
                    task,
                    completed=min(p.elapsed_s, p.budget_s),
                    description=f"{p.step[:70]}  [dim]best: {p.best[:60]}[/]",
                )

            result = tune(Path(repo_path), name, settings, progress=show)
    except ShipyardError as exc:
        _fail(exc.message)
    if as_json:
        click.echo(json.dumps(result.report, indent=2))
    else:
        if not console.is_terminal:
            console.width = max(console.width, 160)
        print_tune(console, result.report)
        console.print(f"report: {result.report_html}")
    if result.exit_code:
        click.echo(f"error: {result.report['winner']['why']}", err=True)
        sys.exit(result.exit_code)
