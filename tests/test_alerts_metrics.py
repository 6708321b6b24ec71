"""contrib/prometheus/alerts.yml and contrib/grafana/castui.json name only metrics castui exports.

A renamed metric silently turns an alert into one that never fires; this catches it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry

from castui_core.bus import EventBus
from castui_core.metrics import Metrics

ROOT = Path(__file__).resolve().parent.parent
NAME = re.compile(r"\bcastui_[a-z0-9_]+")
#: Series Prometheus makes itself for every scrape target.
PROMETHEUS_OWN = {"up"}


def exported_names(registry: CollectorRegistry) -> set[str]:
    """Every series name a scrape can return, from the collectors' declared types."""
    names: set[str] = set()
    for family in registry.collect():
        base = family.name
        if family.type == "counter":
            names |= {f"{base}_total", f"{base}_created"}
        elif family.type == "histogram":
            names |= {f"{base}_bucket", f"{base}_sum", f"{base}_count", f"{base}_created"}
        else:
            names.add(base)
    return names


def alert_exprs() -> list[tuple[str, str]]:
    rules = yaml.safe_load((ROOT / "contrib/prometheus/alerts.yml").read_text())
    out = []
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert {"alert", "expr", "labels", "annotations"} <= rule.keys(), rule
            assert rule["labels"]["severity"] in {"info", "warning", "critical"}
            assert rule["annotations"]["summary"]
            out.append((rule["alert"], rule["expr"]))
    return out


def dashboard_exprs() -> list[tuple[str, str]]:
    board = json.loads((ROOT / "contrib/grafana/castui.json").read_text())
    return [(p["title"], t["expr"]) for p in board["panels"] for t in p["targets"]]


async def test_every_metric_named_in_alerts_and_dashboard_exists() -> None:
    metrics = Metrics(EventBus())
    exported = exported_names(metrics.registry)
    metrics.close()
    assert "castui_queue_jobs" in exported and "castui_jobs_finished_total" in exported
    used: set[str] = set()
    for where, expr in alert_exprs() + dashboard_exprs():
        names = set(NAME.findall(expr))
        assert names or "up{" in expr, f"{where}: names no castui metric: {expr}"
        unknown = names - exported
        assert not unknown, f"{where}: {sorted(unknown)} not exported by castui_core/metrics.py"
        used |= names
    alerts = dict(alert_exprs())
    for needed in ("CastuiDeadJobs", "CastuiJellyfinOutboxStuck", "CastuiGuardrailHeldLong"):
        assert needed in alerts
    assert set(re.findall(r"\b([a-z_]+)\{job=", alerts["CastuiNodeOffline"])) <= PROMETHEUS_OWN
    # The dashboard shows every family castui exports (a new metric gets a panel).
    families = {f.name for f in metrics.registry.collect()}
    shown = {n.removesuffix("_total").removesuffix("_bucket") for n in used}
    assert families <= shown, f"no panel or alert for {sorted(families - shown)}"
