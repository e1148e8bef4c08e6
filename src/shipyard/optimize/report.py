"""The optimization report (stored as report.json) and the tables ``shipyard`` prints.

``report.json`` of an optimized version holds: what was done (``optimization``, with the int8
weight range chosen for the CPU in ``optimization.int8``), the accuracy guard's figures
(``accuracy``; after the model's post-processing when it has any, with the raw-output figures
in ``raw_outputs``), sizes, latency/throughput before and after (``speed``: the median rounds,
and every round), the speed guard's verdict for the objective (``speed_guard``), the hardware
it was measured on (``hardware``, the short form of
:meth:`shipyard.hardware.HardwareReport.summary`) and the decision.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from shipyard.hardware import HardwareReport, int8_kernels

__all__ = ["print_hardware", "print_optimization"]


def _gib(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**30:.1f} GiB"


def print_hardware(console: Console, hw: HardwareReport) -> None:
    """``shipyard hw``: the CPU, memory, GPUs, execution providers and other runtimes."""
    cpu = hw.cpu
    console.print(f"[bold]CPU[/]     {cpu.model} ({cpu.architecture})")
    cores = "?" if cpu.physical_cores is None else str(cpu.physical_cores)
    console.print(f"         {cores} physical / {cpu.logical_cores} logical cores")
    console.print(f"         {', '.join(cpu.features) or 'no AVX2/AVX-512/NEON-class features'}")
    int8 = int8_kernels(cpu)
    console.print(
        f"[bold]Int8[/]    {int8.description}: "
        + (
            "int8 products summed in 16 bits, which saturates (shipyard optimize: 7-bit weights)"
            if int8.saturates
            else "int8 products summed exactly (shipyard optimize: full-range weights)"
        )
    )
    console.print(
        f"[bold]Memory[/]  {_gib(hw.memory_total_bytes)} total,"
        f" {_gib(hw.memory_available_bytes)} available"
    )
    if hw.gpus:
        for gpu in hw.gpus:
            cc = f", compute capability {gpu.compute_capability}" if gpu.compute_capability else ""
            console.print(f"[bold]GPU[/]     {gpu.name}, {_gib(gpu.memory_bytes)}{cc}")
    if hw.gpu_note:
        console.print(f"[bold]GPU[/]     {hw.gpu_note}")
    table = Table(
        title=f"ONNX Runtime {hw.onnxruntime_version} execution providers", title_justify="left"
    )
    for column in ("provider", "device", "precisions", "notes"):
        table.add_column(column)
    for p in hw.providers:
        table.add_row(p.name, p.device, ", ".join(p.precisions) or "-", p.notes)
    console.print(table)
    devices = ", ".join(hw.openvino_devices)
    console.print(f"[bold]OpenVINO[/] {devices or hw.openvino_note}")
    console.print(f"[bold]LiteRT[/]   {hw.litert_note}")


def _change(ratio: float, better: str, worse: str) -> str:
    """``ratio`` > 1 is an improvement: "1.50x faster"; < 1: "2.00x slower"."""
    if ratio >= 1:
        return f"{ratio:.2f}x {better}"
    return f"{1 / max(ratio, 1e-9):.2f}x {worse}"


def _ms(value: float) -> str:
    return f"{value:.3f} ms" if value < 10 else f"{value:.1f} ms"


def print_optimization(console: Console, report: dict[str, Any]) -> None:
    """``shipyard optimize``: accuracy figures, size and speed before/after, the decision."""
    opt = report["optimization"]
    acc = report["accuracy"]
    table = Table(
        title=(
            f"{report['model']} v{opt['source_version']} -> {opt['method']}"
            f" (accuracy vs v{opt['baseline_version']} on {acc['samples']} samples of"
            f" {acc['validation']})"
        ),
        title_justify="left",
    )
    for column in ("", "before", "after", "change"):
        table.add_column(column, justify="right" if column else "left")
    size = report["size"]
    table.add_row(
        "size",
        f"{size['before_bytes'] / 1024:.0f} KiB",
        f"{size['after_bytes'] / 1024:.0f} KiB",
        _change(1 / max(size["ratio"], 1e-9), "smaller", "larger"),
    )
    speed = report.get("speed")
    if speed:
        b, a = speed["before"], speed["after"]
        guard = report["speed_guard"]
        for key in ("p50_ms", "p99_ms"):
            ratio = (
                guard["latency_speedup"]  # the median of the paired rounds
                if key == "p50_ms"
                else b["latency"][key] / max(a["latency"][key], 1e-9)
            )
            table.add_row(
                f"latency {key[:3]} (batch {b['latency']['batch']})",
                _ms(b["latency"][key]),
                _ms(a["latency"][key]),
                _change(ratio, "faster", "slower"),
            )
        table.add_row(
            f"throughput (batch {b['throughput']['batch']})",
            f"{b['throughput']['samples_per_s']:.0f}/s",
            f"{a['throughput']['samples_per_s']:.0f}/s",
            _change(guard["throughput_speedup"], "higher", "lower"),
        )
    for key, label in (
        ("baseline_accuracy", "accuracy (baseline)"),
        ("candidate_accuracy", "accuracy (candidate)"),
        ("top1_agreement", "top-1 agreement"),
        ("cosine", "cosine similarity"),
        ("max_abs_error", "max abs error"),
    ):
        if key in acc:
            table.add_row(label, "", f"{acc[key]:.6g}", "")
    console.print(table)
    if "compared" in acc:
        raw = acc.get("raw_outputs", {})
        shown = ", ".join(
            f"{label} {raw[key]:.6g}"
            for key, label in (
                ("top1_agreement", "top-1 agreement"),
                ("cosine", "cosine"),
                ("max_abs_error", "max abs error"),
            )
            if key in raw
        )
        console.print(
            f"figures {acc['compared']}" + (f" (raw model outputs: {shown})" if shown else "")
        )
    verdict = "[green]passed[/]" if acc["passed"] else "[red]REJECTED[/]"
    console.print(
        f"accuracy guard: {verdict} ({acc['metric']} drop {acc['drop']:.4g},"
        f" max {acc['max_drop']:g})"
    )
    int8 = opt.get("int8")
    if int8:
        console.print(
            f"int8 weights: {'7-bit (reduce_range)' if int8['reduce_range'] else 'full range'}"
            f" for {int8['description']}: {int8['reason']}"
        )
    if speed:
        guard = report["speed_guard"]
        colour = "green" if guard["passed"] else "yellow"
        console.print(
            f"speed guard (objective: {guard['objective']}): [{colour}]{guard['verdict']}[/]"
        )
    hw = report["hardware"]
    console.print(
        f"measured on {hw['cpu']} ({hw['logical_cores']} logical cores), ONNX Runtime"
        f" {hw['onnxruntime']}, providers {', '.join(report['speed_providers'])}"
        if speed
        else f"hardware: {hw['cpu']}"
    )
    for note in report.get("notes", []):
        console.print(f"note: {note}")
