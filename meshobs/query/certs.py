"""`meshobs certs`: the certificates that expire first (leaf and CA, per workload), with the
time left and the share of their lifetime left (the rules record the lifetime from the
certificate's start where the exporter knows it, else the mesh's default leaf lifetime)."""

from __future__ import annotations

import argparse

from meshobs import recordings as rec
from meshobs.config import duration_seconds
from meshobs.query import command, output
from meshobs.query.context import Column, Context, rounded
from meshobs.query.output import Column as Show
from meshobs.query.output import Report, Table
from meshobs.query.recorded import checked_name


def _expiring(report: Report, threshold: float | None) -> list[str]:
    return [f"{row['namespace']}/{row['workload']} {row['cert']} ({row['mesh']})"
            for t in report.tables for row in t.rows if row["seconds_left"] < threshold]


CONDITIONS = {
    "expires-within": command.Condition("a certificate expires within DURATION, e.g. 7d", _expiring, "DURATION",
                                        duration_seconds),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("workload", nargs="?", help="only this workload")
    parser.add_argument("--limit", type=int, default=20, help="show this many, soonest first (0: all; default 20)")
    command.add_arguments(parser, CONDITIONS)


def run(args: argparse.Namespace) -> int:
    return command.run(args, collect, CONDITIONS)


def collect(ctx: Context, args: argparse.Namespace) -> Report:
    m = {"destination_workload": checked_name("certs", args.workload)} if args.workload else {}
    columns = [Column("expiry", rec.CERT_EXPIRY, m), Column("lifetime", rec.CERT_LIFETIME, m)]
    joined = ctx.join(ctx.fetch(columns), ("destination_namespace", "destination_workload", "cert"))
    rows = []
    for (mesh, cluster, namespace, workload, cert), v in joined.items():
        if "expiry" not in v:
            continue
        left = v["expiry"] - ctx.at
        lifetime = v.get("lifetime")  # known from the certificate's start, else the mesh's default leaf lifetime
        rows.append({
            "mesh": mesh, "cluster": cluster, "namespace": namespace, "workload": workload, "cert": cert,
            "expires_at": ctx.iso(v["expiry"]), "seconds_left": round(left, 3),
            # more time left than the lifetime: a default leaf lifetime applied to a CA, unknown
            "lifetime_left": rounded(max(0.0, left / lifetime)) if lifetime and left <= lifetime else None,
        })
    rows.sort(key=lambda row: (row["seconds_left"], row["mesh"], row["namespace"], row["workload"], row["cert"]))
    shown = rows[:args.limit] if args.limit > 0 else rows
    return Report("certs", ctx.window, ctx.timestamp, [Table("certificates", "Certificates, soonest expiry first", (
        Show("CLUSTER", "cluster", wide=True), Show("NAMESPACE", "namespace"), Show("WORKLOAD", "workload"),
        Show("MESH", "mesh"), Show("CERT", "cert"), Show("EXPIRES IN", "seconds_left", output.duration),
        Show("LIFETIME LEFT", "lifetime_left", output.percent), Show("EXPIRES AT", "expires_at", wide=True),
    ), shown, "no certificate expiry recorded in this scope")])
