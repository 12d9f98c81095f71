"""`meshobs tls`: per workload, how much traffic arrives over mutual TLS, which sources still
send plaintext, why handshakes fail, and whether enforcing STRICT mTLS is safe: safe when no
plaintext request reached the workload in the window, else the sources that would break."""

from __future__ import annotations

import argparse

from meshobs import recordings as rec
from meshobs.query import command, output
from meshobs.query.context import Column, Context, mtls_share, rounded
from meshobs.query.output import Column as Show
from meshobs.query.output import Report, Table
from meshobs.query.recorded import checked_name

UNKNOWN = "unknown"  # Istio's value for a peer without mesh metadata: a caller outside the mesh


def _name(row: dict) -> str:
    return f"{row['namespace']}/{row['workload']} ({row['mesh']})"


def _offenders(test):
    def offenders(report: Report, threshold: float | None) -> list[str]:
        return [_name(row) for t in report.tables if t.name == "workloads" for row in t.rows if test(row, threshold)]

    return offenders


CONDITIONS = {
    "plaintext": command.Condition("a workload received plaintext (STRICT would break it)",
                                   _offenders(lambda row, _: not row["strict_safe"])),
    "tls-failures": command.Condition("a TLS handshake failed",
                                      _offenders(lambda row, _: sum(row["tls_failures_per_second"].values()) > 0)),
    "mtls-below": command.Condition("an mTLS share under RATIO", _offenders(
        lambda row, threshold: row["mtls_share"] is not None and row["mtls_share"] < threshold), "RATIO", command.ratio),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("workload", nargs="?", help="only this destination workload")
    parser.add_argument("--edges", action="store_true",
                        help="also print every source -> destination edge with its mTLS share (always in -o json/yaml)")
    command.add_arguments(parser, CONDITIONS)


def run(args: argparse.Namespace) -> int:
    return command.run(args, collect, CONDITIONS)


def _source_name(source: dict) -> str:
    if (source["namespace"], source["workload"]) == (UNKNOWN, UNKNOWN):
        return "callers outside the mesh"
    return f"{source['namespace']}/{source['workload']}"


def _sources_text(row: dict) -> str:
    if row["strict_safe"]:
        return "safe to enforce STRICT" + ("" if row["requests_per_second"] else " (no traffic in the window)")
    if not row["plaintext_sources"]:  # None: the mesh does not label plaintext by source
        return "would break plaintext callers (sources unknown)"
    return "would break " + ", ".join(_source_name(s) for s in row["plaintext_sources"])


def _failures_text(by_reason: dict[str, float]) -> str:
    failing = [f"{reason} {output.per_second(rate)}" for reason, rate in by_reason.items() if rate > 0]
    return ", ".join(failing) or output.MISSING


def collect(ctx: Context, args: argparse.Namespace) -> Report:
    m = {"destination_workload": checked_name("tls", args.workload)} if args.workload else {}
    edge_families = {"requests": rec.workload_edge_requests, "mtls": rec.workload_edge_mtls,
                     "plaintext": rec.workload_edge_plaintext}
    columns = [Column("requests", rec.workload_requests, m), Column("mtls", rec.mtls_requests, m),
               Column("plaintext", rec.plaintext, m), Column("failures", rec.tls_failures, m),
               *(Column(f"edge_{name}", family, m) for name, family in edge_families.items())]
    workload_labels = ("destination_namespace", "destination_workload")
    fetched = ctx.fetch(columns)
    failures = ctx.join({"failures": fetched.pop("failures")}, workload_labels, group="reason")
    edge_labels = ("destination_namespace", "destination_workload", "source_namespace", "source_workload")
    edge_values = ctx.join({name: fetched.pop(f"edge_{name}") for name in edge_families}, edge_labels)
    joined = ctx.join(fetched, workload_labels)
    for key in failures:
        joined.setdefault(key, {})

    by_destination: dict[tuple, list[dict]] = {}
    sources, edges = [], []
    for (mesh, cluster, dns, dwl, sns, swl), v in sorted(edge_values.items()):
        recorded = {name: bool(ctx.catalogue.windows(mesh, family)) for name, family in edge_families.items()}
        where = {"mesh": mesh, "cluster": cluster, "source_namespace": sns, "source_workload": swl,
                 "namespace": dns, "workload": dwl}
        edges.append(dict(where, requests_per_second=rounded(v.get("requests", 0.0)),
                          mtls_share=rounded(mtls_share(v, recorded["mtls"], recorded["plaintext"])),
                          plaintext_per_second=rounded(v.get("plaintext", 0.0)) if recorded["plaintext"] else None))
        if v.get("plaintext", 0) > 0:
            source = {"namespace": sns, "workload": swl, "requests_per_second": rounded(v["plaintext"])}
            by_destination.setdefault((mesh, cluster, dns, dwl), []).append(source)
            sources.append(dict(where, requests_per_second=rounded(v["plaintext"])))

    rows = []
    for key, v in sorted(joined.items()):
        mesh, cluster, namespace, workload = key
        plaintext = v.get("plaintext", 0.0)
        knows_sources = bool(ctx.catalogue.windows(mesh, rec.workload_edge_plaintext))
        rows.append({
            "mesh": mesh, "cluster": cluster, "namespace": namespace, "workload": workload,
            "requests_per_second": rounded(v.get("requests", 0.0)),
            "mtls_share": rounded(mtls_share(v, bool(ctx.catalogue.windows(mesh, rec.mtls_requests)))),
            "plaintext_per_second": rounded(plaintext),
            "tls_failures_per_second": {reason: rounded(rate) for reason, rate in
                                        sorted(failures.get(key, {}).get("failures", {}).items())},
            "strict_safe": plaintext <= 0,
            "plaintext_sources": (by_destination.get(key, []) if knows_sources else None) if plaintext > 0 else [],
        })
    for row in rows:
        row["verdict"] = _sources_text(row)
    unsafe = [row for row in rows if not row["strict_safe"]]
    verdict = ("STRICT mTLS is safe to enforce for every workload shown" if not unsafe else
               f"STRICT mTLS would break {len(unsafe)} workload(s): " + ", ".join(_name(r) for r in unsafe))
    return Report("tls", ctx.window, ctx.timestamp, [
        Table("workloads", "mTLS by destination workload", (
            Show("CLUSTER", "cluster", wide=True), Show("NAMESPACE", "namespace"), Show("WORKLOAD", "workload"),
            Show("MESH", "mesh"), Show("MTLS", "mtls_share", output.percent),
            Show("PLAINTEXT", "plaintext_per_second", output.per_second),
            Show("RPS", "requests_per_second", output.per_second, wide=True),
            Show("TLS FAILURES", "tls_failures_per_second", _failures_text), Show("STRICT", "verdict"),
        ), rows, "no workload has recorded traffic in this scope"),
        Table("plaintext_sources", "Plaintext sources",
              output.edge_columns(Show("PLAINTEXT", "requests_per_second", output.per_second)),
              sources, "no plaintext source recorded"),
        Table("edges", "Edges (source workload -> destination workload)", output.edge_columns(
            Show("RPS", "requests_per_second", output.per_second), Show("MTLS", "mtls_share", output.percent),
            Show("PLAINTEXT", "plaintext_per_second", output.per_second)), edges, "no recorded edge", shown=args.edges),
    ], summary={"strict_safe": not unsafe}, lines=["", verdict])
