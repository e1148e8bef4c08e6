"""The Grafana dashboard in deploy/grafana/ queries only metrics a live server exposes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx

from shipyard.testing import running_server

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "shipyard.json"
#: A metric name in PromQL: Shipyard's, the process collector's, Python's.
METRIC = re.compile(r"\b((?:shipyard|process|python)_[a-z0-9_]+)\b")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def _queries(dashboard: dict[str, Any]) -> list[str]:
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", ())]
    exprs += [
        variable["query"]["query"]
        for variable in dashboard["templating"]["list"]
        if variable["type"] == "query"
    ]
    return exprs


def _exposed(text: str) -> set[str]:
    """Every sample name /metrics has, or would have for a family declared without samples."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split()
            names.add(family)  # a counter's family is already named ..._total here
            names.update(family + suffix for suffix in SUFFIXES.get(kind, ("",)))
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def test_every_queried_metric_exists(simple_repository: Path) -> None:
    """Each metric the dashboard's panels and variables query is in a live server's /metrics."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    row = {
        "inputs": [
            {"name": name, "datatype": "FP32", "shape": [1, 16], "data": [1.0] * 16}
            for name in ("INPUT0", "INPUT1")
        ]
    }
    with running_server(simple_repository) as server, httpx.Client(base_url=server.url) as client:
        assert client.post("/v2/models/simple/infer", json=row).status_code == 200
        exposed = _exposed(client.get("/metrics").text)
    queried = {name for expr in _queries(dashboard) for name in METRIC.findall(expr)}
    assert len(queried) >= 15
    assert queried - exposed == set()


def test_dashboard_is_well_formed() -> None:
    """Unique panel IDs, a grid position each, and every query on the datasource variable."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"}
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert panel["datasource"]["uid"] == "${datasource}"
    assert dashboard["uid"] == "shipyard-serving"
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "model", "job"} <= variables
