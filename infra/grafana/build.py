#!/usr/bin/env python3
"""Writes the Grafana dashboards (dashboards/*.json) from the panel lists
below, so the three stay consistent. Run after editing: python3 build.py.
Every metric named here must exist in the services: checked by
adapters/metrics/tests/infra_metrics.rs."""
import json
import pathlib
import sys

DS = {"type": "prometheus", "uid": "${datasource}"}
E = 'election=~"$election"'


def panel(title, exprs, kind="timeseries", unit="short", w=12, h=8, thresholds=None):
    p = {
        "type": kind,
        "title": title,
        "datasource": DS,
        "gridPos": {"w": w, "h": h},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [
            {"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend, "datasource": DS}
            for i, (expr, legend) in enumerate(exprs)
        ],
    }
    if thresholds:
        p["fieldConfig"]["defaults"]["thresholds"] = {
            "mode": "absolute",
            "steps": [{"color": c, "value": v} for v, c in thresholds],
        }
        p["fieldConfig"]["defaults"]["color"] = {"mode": "thresholds"}
    return p


def q(quantile, metric, selector=""):
    return f"histogram_quantile({quantile}, sum by (le) (rate({metric}_bucket{{{selector}}}[1m])))"


RED = [(None, "green"), (1, "red")]

DASHBOARDS = {
    "live-voting": (
        "Livevote · Live Voting",
        [
            panel("Votes accepted / s", [(f"sum(rate(livevote_votes_accepted_total{{{E}}}[1m]))", "accepted"),
                                         (f"sum(rate(livevote_votes_persisted_total{{{E}}}[1m]))", "persisted")], unit="reqps"),
            panel("Votes refused / s by reason", [("sum by (reason) (rate(livevote_votes_rejected_total[1m]))", "{{reason}}")], unit="reqps"),
            panel("Vote latency (POST /api/v1/votes)", [(q(0.5, "livevote_http_request_duration_seconds", 'route="cast_vote"'), "p50"),
                                                        (q(0.99, "livevote_http_request_duration_seconds", 'route="cast_vote"'), "p99")], unit="s"),
            panel("Vote answers / s by status", [('sum by (status) (rate(livevote_http_requests_total{route="cast_vote"}[1m]))', "{{status}}")], unit="reqps"),
            panel("Accepted votes by election", [(f"sum by (election) (livevote_votes_accepted_total{{{E}}})", "{{election}}")]),
            panel("Results reads from the stores / s", [(f"sum by (election) (rate(livevote_results_reads_total{{{E}}}[1m]))", "{{election}}")], unit="reqps"),
            panel("Results requests / s", [('sum by (route) (rate(livevote_http_requests_total{route=~"results.*"}[1m]))', "{{route}}")], unit="reqps"),
            panel("Results latency p99", [(q(0.99, "livevote_http_request_duration_seconds", 'route=~"results|results_live"'), "p99")], unit="s"),
            panel("Open result streams (SSE)", [("sum(livevote_results_streams_open)", "streams")], kind="stat", w=6),
        ],
    ),
    "vote-integrity": (
        "Livevote · Vote Integrity",
        [
            panel("Lost votes (reconciliation)", [(f"max by (election) (livevote_reconciliation_lost_votes{{{E}}})", "{{election}}")], kind="stat", w=6, thresholds=RED),
            panel("Dead-lettered messages", [("max(livevote_dead_letter_messages)", "DLQ")], kind="stat", w=6, thresholds=RED),
            panel("Votes in flight, all elections", [("sum(livevote_reconciliation_in_flight_votes)", "in flight")], kind="stat", w=6),
            panel("Surplus votes (reconciliation)", [(f"max by (election) (livevote_reconciliation_surplus_votes{{{E}}})", "{{election}}")], kind="stat", w=6, thresholds=[(None, "green"), (1, "orange")]),
            panel("Votes in flight (accepted, not yet stored)", [(f"sum by (election) (livevote_reconciliation_in_flight_votes{{{E}}})", "{{election}}")]),
            panel("Accepted vs persisted / s", [(f"sum(rate(livevote_votes_accepted_total{{{E}}}[1m]))", "accepted"),
                                               (f"sum(rate(livevote_votes_persisted_total{{{E}}}[1m]))", "persisted"),
                                               (f"sum(rate(livevote_duplicates_dropped_total{{{E}}}[1m]))", "refused by the unique constraint")], unit="reqps"),
            panel("Redeliveries and poison messages / s", [("sum(rate(livevote_redeliveries_total[1m]))", "redelivered copies"),
                                                           ("sum(rate(livevote_poison_messages_total[1m]))", "poison")], unit="reqps"),
            panel("Ingestion failure paths / s", [("sum(rate(livevote_publish_failed_votes_total[1m]))", "publish failed (503)"),
                                                  ("sum(rate(livevote_claims_released_total[1m]))", "claims released"),
                                                  ("sum(rate(livevote_confirms_missed_total[1m]))", "confirms missed"),
                                                  ("sum(rate(livevote_votes_replayed_total[1m]))", "idempotent replays")], unit="reqps"),
            panel("Queue lag (send to commit)", [(q(0.5, "livevote_queue_lag_seconds"), "p50"), (q(0.99, "livevote_queue_lag_seconds"), "p99")], unit="s"),
        ],
    ),
    "infrastructure": (
        "Livevote · Infrastructure",
        [
            panel("Services up", [('up{job=~"livevote-.*"}', "{{job}} {{instance}}")], kind="stat", w=24, h=4),
            panel("Requests / s by service and route", [("sum by (job, route) (rate(livevote_http_requests_total[1m]))", "{{job}} {{route}}")], unit="reqps"),
            panel("5xx / s by service", [('sum by (job) (rate(livevote_http_requests_total{status=~"5.."}[1m]))', "{{job}}")], unit="reqps"),
            panel("SQS publish batches", [("sum(rate(livevote_published_votes_total[1m])) / clamp_min(sum(rate(livevote_publish_batches_total[1m])), 1e-9)", "votes per batch"),
                                          ("sum(rate(livevote_publish_batches_total[1m]))", "batches / s")]),
            panel("SQS publish latency", [(q(0.5, "livevote_publish_batch_seconds"), "p50"), (q(0.99, "livevote_publish_batch_seconds"), "p99")], unit="s"),
            panel("PostgreSQL persist batches", [("sum(rate(livevote_persist_batch_votes_total[1m])) / clamp_min(sum(rate(livevote_persist_batches_total[1m])), 1e-9)", "votes per batch"),
                                                 ("sum(rate(livevote_persist_batch_messages_total[1m])) / clamp_min(sum(rate(livevote_persist_batches_total[1m])), 1e-9)", "messages per batch")]),
            panel("PostgreSQL persist latency", [(q(0.5, "livevote_persist_batch_seconds"), "p50"), (q(0.99, "livevote_persist_batch_seconds"), "p99")], unit="s"),
            panel("Open result streams per instance", [("livevote_results_streams_open", "{{instance}}")]),
        ],
    ),
}


def layout(panels):
    x = y = row_h = 0
    for i, p in enumerate(panels):
        w, h = p["gridPos"]["w"], p["gridPos"]["h"]
        if x + w > 24:
            x, y, row_h = 0, y + row_h, 0
        p["gridPos"].update({"x": x, "y": y})
        p["id"] = i + 1
        x += w
        row_h = max(row_h, h)
    return panels


def dashboard(uid, title, panels):
    return {
        "uid": f"livevote-{uid}",
        "title": title,
        "tags": ["livevote"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "5s",
        "time": {"from": "now-30m", "to": "now"},
        "templating": {
            "list": [
                {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus"},
                {
                    "name": "election",
                    "label": "Election",
                    "type": "query",
                    "datasource": DS,
                    "query": {"query": "label_values(livevote_votes_accepted_total, election)", "refId": "elections"},
                    "includeAll": True,
                    "multi": True,
                    "allValue": ".*",
                    "refresh": 2,
                },
            ]
        },
        "annotations": {"list": []},
        "panels": layout(panels),
    }


if __name__ == "__main__":
    # --check: fail if a committed dashboard differs from what this script writes.
    check = "--check" in sys.argv[1:]
    out = pathlib.Path(__file__).parent / "dashboards"
    out.mkdir(exist_ok=True)
    stale = []
    for uid, (title, panels) in DASHBOARDS.items():
        path = out / f"{uid}.json"
        text = json.dumps(dashboard(uid, title, panels), indent=2) + "\n"
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
            continue
        path.write_text(text)
        print(f"wrote {path}")
    if stale:
        sys.exit("out of date (run python3 infra/grafana/build.py): " + ", ".join(stale))
    if check:
        print(f"dashboards up to date: {len(DASHBOARDS)}")
