"""`meshobs authz`: per destination workload, what authorization policies allow and deny,
who is denied (where the mesh names the source), and what dry-run / shadow / audit policies
would deny if they were enforced."""

from __future__ import annotations

import argparse

from meshobs import recordings as rec
from meshobs.query import command, output
from meshobs.query.context import Column, Context, rounded
from meshobs.query.output import Column as Show
from meshobs.query.output import Report, Table
from meshobs.query.recorded import checked_name


def _positive(table: str, key: str):
    def offenders(report: Report, threshold: float | None) -> list[str]:
        return [f"{row['namespace']}/{row['workload']} ({row['mesh']})"
                for t in report.tables if t.name == table for row in t.rows if (row.get(key) or 0) > 0]

    return offenders


CONDITIONS = {
    "denied": command.Condition("any request denied", _positive("workloads", "denied_per_second")),
    "would-deny": command.Condition("a dry-run policy would deny a request",
                                    _positive("workloads", "dry_run_denied_per_second")),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("workload", nargs="?", help="only this destination workload")
    command.add_arguments(parser, CONDITIONS)


def run(args: argparse.Namespace) -> int:
    return command.run(args, collect, CONDITIONS)


def _recorded_or_none(ctx: Context, mesh: str, family: rec.Family, value: float | None) -> float | None:
    """0 where the mesh records the family but nothing happened; None where it cannot tell."""
    if value is not None:
        return rounded(value)
    return 0.0 if ctx.catalogue.windows(mesh, family) else None


def collect(ctx: Context, args: argparse.Namespace) -> Report:
    m = {"destination_workload": checked_name("authz", args.workload)} if args.workload else {}
    columns = [Column("allowed", rec.authz_allowed, m), Column("denied", rec.authz_denied, m),
               Column("dry_run_denied", rec.dry_run_denied, m), Column("dry_run_allowed", rec.dry_run_allowed, m),
               Column("forbidden", rec.workload_edge_forbidden, m)]
    fetched = ctx.fetch(columns)
    labels = ("source_namespace", "source_workload", "destination_namespace", "destination_workload", "source_principal")
    forbidden = ctx.join({"denied": fetched.pop("forbidden")}, labels)
    joined = ctx.join(fetched, ("destination_namespace", "destination_workload"))
    workloads = [{
        "mesh": mesh, "cluster": cluster, "namespace": namespace, "workload": workload,
        "allowed_per_second": _recorded_or_none(ctx, mesh, rec.authz_allowed, v.get("allowed")),
        "denied_per_second": _recorded_or_none(ctx, mesh, rec.authz_denied, v.get("denied")),
        "dry_run_denied_per_second": _recorded_or_none(ctx, mesh, rec.dry_run_denied, v.get("dry_run_denied")),
        "dry_run_allowed_per_second": _recorded_or_none(ctx, mesh, rec.dry_run_allowed, v.get("dry_run_allowed")),
    } for (mesh, cluster, namespace, workload), v in sorted(joined.items())]

    sources = [{
        "mesh": mesh, "cluster": cluster, "source_namespace": sns, "source_workload": swl,
        "source_principal": principal or None, "namespace": dns, "workload": dwl,
        "denied_per_second": rounded(v["denied"]),
    } for (mesh, cluster, sns, swl, dns, dwl, principal), v in sorted(forbidden.items(),
                                                                      key=lambda kv: (-kv[1]["denied"], kv[0]))
        if v.get("denied", 0) > 0]

    return Report("authz", ctx.window, ctx.timestamp, [
        Table("workloads", "Authorization by destination workload", (
            Show("CLUSTER", "cluster", wide=True), Show("NAMESPACE", "namespace"), Show("WORKLOAD", "workload"),
            Show("MESH", "mesh"), Show("ALLOWED", "allowed_per_second", output.per_second),
            Show("DENIED", "denied_per_second", output.per_second),
            Show("WOULD DENY", "dry_run_denied_per_second", output.per_second),
            Show("WOULD ALLOW", "dry_run_allowed_per_second", output.per_second, wide=True),
        ), workloads, "no authorization decisions recorded in this scope"),
        Table("denied_sources", "Denied sources (403 by caller, where the mesh names it)",
              output.edge_columns(Show("DENIED", "denied_per_second", output.per_second),
                                  Show("IDENTITY", "source_principal", wide=True)),
              sources, "no denied source recorded"),
    ])
