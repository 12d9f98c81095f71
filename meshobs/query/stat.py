"""`meshobs stat`: golden signals per workload or service (like `linkerd viz stat`, for every
mesh), or per source→destination edge with `--from` / `--to`."""

from __future__ import annotations

import argparse

from meshobs import recordings as rec
from meshobs.config import duration_seconds
from meshobs.errors import QueryError
from meshobs.query import command, output
from meshobs.query.context import Column, Context, mtls_share, rounded, success_rate
from meshobs.query.output import Column as Show
from meshobs.query.output import Report, Table
from meshobs.query.recorded import checked_name

# `deploy/web` as `linkerd viz stat` users type it: a workload (Deployment, StatefulSet...) by name
KINDS = {"workload": "workload", "workloads": "workload", "wl": "workload", "deploy": "workload", "deployment": "workload",
         "service": "service", "services": "service", "svc": "service"}
QUANTILES = (("p50", "0.5"), ("p95", "0.95"), ("p99", "0.99"))


def _where(row: dict) -> str:
    if "source_workload" in row:
        return (f"{row['source_namespace']}/{row['source_workload']} -> "
                f"{row['destination_namespace']}/{row['destination_service']}")
    return f"{row['namespace']}/{row.get('workload') or row.get('service')} ({row['mesh']})"


def _success_below(report: Report, threshold: float | None) -> list[str]:
    return [_where(row) for table in report.tables for row in table.rows
            if row.get("success_rate") is not None and row["success_rate"] < threshold]


def _p99_above(report: Report, threshold: float | None) -> list[str]:
    return [_where(row) for table in report.tables for row in table.rows
            if (row.get("latency_seconds") or {}).get("p99") is not None and row["latency_seconds"]["p99"] > threshold]


CONDITIONS = {
    "success-below": command.Condition("a success rate under RATIO, e.g. 0.99 or 99%", _success_below, "RATIO",
                                       command.ratio),
    "p99-above": command.Condition("a p99 latency over DURATION, e.g. 500ms", _p99_above, "DURATION",
                                   duration_seconds),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", nargs="?", default="workload", metavar="KIND[/NAME]",
                        help="workload (default) or service, optionally one by name: workload/web, svc/web")
    parser.add_argument("--from", dest="source", metavar="[NAMESPACE/]WORKLOAD",
                        help="edges: requests sent by this workload, per destination service")
    parser.add_argument("--to", dest="destination", metavar="[NAMESPACE/]SERVICE",
                        help="edges: requests received by this service, per source workload")
    command.add_arguments(parser, CONDITIONS)


def run(args: argparse.Namespace) -> int:
    return command.run(args, collect, CONDITIONS)


def _target(text: str) -> tuple[str, str | None]:
    kind, _, name = text.partition("/")
    if kind not in KINDS or (text.endswith("/") and not name):
        raise QueryError(f"stat: {text!r} is not workload, service, workload/NAME or service/NAME (or deploy/NAME, svc/NAME)")
    return KINDS[kind], checked_name("stat", name) if name else None


def _qualified(option: str, text: str | None, namespace: str | None) -> tuple[str | None, str | None]:
    """(namespace, name) of `--from`/`--to`'s [NAMESPACE/]NAME."""
    if text is None:
        return None, None
    ns, _, name = text.rpartition("/")
    return checked_name(option, ns) if ns else namespace, checked_name(option, name)


def _latency(values: dict) -> dict:
    return {label: rounded(values.get(label)) for label, _ in QUANTILES}


LATENCY_COLUMNS = tuple(Show(label.upper(), f"latency_seconds.{label}", output.seconds) for label, _ in QUANTILES)


def _latency_columns(family: rec.Family, matchers: dict[str, str]) -> list[Column]:
    return [Column(label, family, dict(matchers, quantile=q), highest=True) for label, q in QUANTILES]


def _workloads(ctx: Context, name: str | None) -> Table:
    m = {"destination_workload": name} if name else {}
    columns = [Column("requests", rec.workload_requests, m), Column("errors", rec.workload_request_errors, m),
               *_latency_columns(rec.workload_latency, m), Column("mtls", rec.mtls_requests, m),
               Column("denied", rec.authz_denied, m), Column("plaintext", rec.plaintext, m),
               Column("tcp", rec.workload_tcp_connections, m)]
    joined = ctx.join(ctx.fetch(columns), ("destination_namespace", "destination_workload"))
    rows = []
    for (mesh, cluster, namespace, workload), v in sorted(joined.items()):
        rows.append({
            "mesh": mesh, "cluster": cluster, "namespace": namespace, "workload": workload,
            "requests_per_second": rounded(v.get("requests", 0.0)),
            "success_rate": rounded(success_rate(v.get("requests"), v.get("errors"))),
            "latency_seconds": _latency(v),
            "mtls_share": rounded(mtls_share(v, bool(ctx.catalogue.windows(mesh, rec.mtls_requests)))),
            "denied_per_second": rounded(v.get("denied", 0.0)),
            "plaintext_per_second": rounded(v.get("plaintext", 0.0)),
            "tcp_connections_per_second": rounded(v.get("tcp", 0.0)),
        })
    return Table("workloads", "Workloads", (
        Show("CLUSTER", "cluster", wide=True), Show("NAMESPACE", "namespace"), Show("WORKLOAD", "workload"),
        Show("MESH", "mesh"), Show("SUCCESS", "success_rate", output.percent),
        Show("RPS", "requests_per_second", output.per_second), *LATENCY_COLUMNS,
        Show("TCP CONN", "tcp_connections_per_second", output.per_second),
        Show("MTLS", "mtls_share", output.percent), Show("DENIED", "denied_per_second", output.per_second),
        Show("PLAINTEXT", "plaintext_per_second", output.per_second, wide=True),
    ), rows, "no workload has recorded traffic in this scope")


def _services(ctx: Context, name: str | None) -> Table:
    m = {"destination_service": name} if name else {}
    columns = [Column("requests", rec.requests, m), Column("errors", rec.request_errors, m),
               *_latency_columns(rec.latency, m)]
    joined = ctx.join(ctx.fetch(columns), ("destination_namespace", "destination_service"))
    rows = [{
        "mesh": mesh, "cluster": cluster, "namespace": namespace, "service": service,
        "requests_per_second": rounded(v.get("requests", 0.0)),
        "success_rate": rounded(success_rate(v.get("requests"), v.get("errors"))),
        "latency_seconds": _latency(v),
    } for (mesh, cluster, namespace, service), v in sorted(joined.items())]
    return Table("services", "Services", (
        Show("CLUSTER", "cluster", wide=True), Show("NAMESPACE", "namespace"), Show("SERVICE", "service"),
        Show("MESH", "mesh"), Show("SUCCESS", "success_rate", output.percent),
        Show("RPS", "requests_per_second", output.per_second), *LATENCY_COLUMNS,
    ), rows, "no service has recorded traffic in this scope")


def _edges(ctx: Context, args: argparse.Namespace) -> Table:
    source_ns, source = _qualified("--from", args.source, ctx.scope.namespace)
    destination_ns, destination = _qualified("--to", args.destination, ctx.scope.namespace)
    m: dict[str, str] = {}
    for label, value in (("source_namespace", source_ns if source else None), ("source_workload", source),
                         ("destination_namespace", destination_ns if destination else None),
                         ("destination_service", destination)):
        if value:
            m[label] = value
    side = "source_namespace" if source and not destination else "destination_namespace"
    columns = [Column("requests", rec.edge_requests, m, side), Column("errors", rec.edge_request_errors, m, side)]
    labels = ("source_namespace", "source_workload", "destination_namespace", "destination_service")
    joined = ctx.join(ctx.fetch(columns), labels)
    rows = [{
        "mesh": mesh, "cluster": cluster, "source_namespace": sns, "source_workload": swl,
        "destination_namespace": dns, "destination_service": dsvc,
        "requests_per_second": rounded(v.get("requests", 0.0)),
        "success_rate": rounded(success_rate(v.get("requests"), v.get("errors"))),
    } for (mesh, cluster, sns, swl, dns, dsvc), v in sorted(joined.items())]
    return Table("edges", "Edges", (
        Show("CLUSTER", "cluster", wide=True), Show("FROM", "source_workload"),
        Show("FROM NAMESPACE", "source_namespace"), Show("TO", "destination_service"),
        Show("TO NAMESPACE", "destination_namespace"), Show("MESH", "mesh"),
        Show("SUCCESS", "success_rate", output.percent), Show("RPS", "requests_per_second", output.per_second),
    ), rows, "no recorded requests between these workloads")


def collect(ctx: Context, args: argparse.Namespace) -> Report:
    kind, name = _target(args.target)
    if args.source or args.destination:
        table = _edges(ctx, args)
    elif kind == "service":
        table = _services(ctx, name)
    else:
        table = _workloads(ctx, name)
    return Report("stat", ctx.window, ctx.timestamp, [table])
