"""Command line: argument parsing only; the work happens in the modules it calls."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path
from typing import Callable, Sequence

from meshobs._version import __version__
from meshobs.errors import MeshobsError

log = logging.getLogger("meshobs")

# Subcommands that live in their own module, imported only when used so that
# `meshobs build` does not pay for aiohttp or OpenTelemetry. Each module offers
# `add_arguments(parser)` and `run(args) -> int`.
_PLUGGED_COMMANDS = {
    "exporter": ("meshobs.exporter.cli", "scrape sidecar proxies and serve normalized security metrics"),
    "verify": ("meshobs.verify", "run every dashboard and rule query against a live Prometheus"),
}


def _verbose_flag(parser: argparse.ArgumentParser, default=False) -> None:
    parser.add_argument("-v", "--verbose", action="store_true", default=default, help="log debug messages")


def _subcommand(sub: argparse._SubParsersAction, name: str, help_text: str) -> argparse.ArgumentParser:
    """A subcommand's parser; `-v` is accepted after the subcommand as well as before it."""
    parser = sub.add_parser(name, help=help_text, description=help_text[:1].upper() + help_text[1:] + ".")
    # SUPPRESS: without -v here, the value given before the subcommand stands
    _verbose_flag(parser, default=argparse.SUPPRESS)
    return parser


def _add_build(sub: argparse._SubParsersAction) -> None:
    parser = _subcommand(sub, "build", "render dashboards, rules, collectors and deploy manifests")
    parser.add_argument("--out", type=Path, default=Path("."), help="output folder (default: current folder)")
    parser.add_argument("--config", type=Path, help="meshobs.yaml overriding the built-in defaults")
    parser.add_argument(
        "--mesh", action="append", dest="meshes", metavar="NAME",
        help="render only this mesh (repeatable; default: all)",
    )
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 listing files that differ")
    parser.set_defaults(func=_run_build)


def _run_build(args: argparse.Namespace) -> int:
    from meshobs import build, config, writer

    cfg = config.load(args.config) if args.config else config.Config()
    artefacts = build.render(cfg, build.select_meshes(args.meshes))
    stale = writer.stale(artefacts, args.out, build.owned_dirs())
    if args.check:
        return _check_build(artefacts, args.out, stale)
    changed = writer.write(artefacts, args.out, build.owned_dirs())
    print(f"{len(artefacts)} file(s) rendered, {len(changed) - len(stale)} changed, {len(stale)} removed, in {args.out}")
    for path in stale:
        log.debug("removed %s: no longer rendered", path)
    return 0


def _check_build(artefacts: dict[str, bytes], out: Path, stale: list[str]) -> int:
    from meshobs import writer

    differing = writer.differences(artefacts, out, stale)
    for how, path in differing:
        print(f"{how}: {path}")
    if differing:
        counts = ", ".join(f"{n} {kind}" for kind in writer.DIFFERENCES if (n := sum(how == kind for how, _ in differing)))
        print(f"{len(differing)} file(s) differ from what meshobs {__version__} renders ({counts}); "
              f"`meshobs build --out {out}` writes them{' and removes the stale ones' if stale else ''}",
              file=sys.stderr)
        return 1
    print(f"{len(artefacts)} file(s) up to date")
    return 0


def _add_check(sub: argparse._SubParsersAction) -> None:
    parser = _subcommand(sub, "check", "statically check rendered dashboards and rule files")
    parser.add_argument("dir", type=Path, nargs="?", default=Path("."), help="folder holding dashboards/ and alerts/")
    parser.add_argument("--prometheus", metavar="URL", type=_prometheus_url,
                        help="also check that the series in this Prometheus carry the labels each mesh's rules "
                             "need (docs/labels.md)")
    parser.set_defaults(func=_run_check)


def _prometheus_url(text: str) -> str:
    from meshobs.verify import prometheus_url

    return prometheus_url(text)


def _run_check(args: argparse.Namespace) -> int:
    from meshobs import checks, manifest

    notes, stale_meshes = manifest.warnings(args.dir)
    for note in notes:
        log.warning("%s", note)
    report = checks.inspect_tree(args.dir, skip=stale_meshes)
    summary = report.summary()
    if args.prometheus:
        from meshobs import labels

        problems, checked = labels.check_folder(args.prometheus, args.dir, stale_meshes)
        report.problems += problems
        summary += f"; {checked} label requirements at {args.prometheus}"
    for problem in report.problems:
        print(problem)
    if report.problems:
        print(f"{summary}: {len(report.problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"{summary}: ok")
    return 0


def _add_config(sub: argparse._SubParsersAction) -> None:
    parser = _subcommand(sub, "config", "print or validate configuration")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--defaults", action="store_true", help="print every key with its default, documented, as YAML")
    group.add_argument("--validate", type=Path, metavar="FILE", help="validate a meshobs.yaml and print the merged result")
    parser.set_defaults(func=_run_config)


def _run_config(args: argparse.Namespace) -> int:
    from meshobs import config

    if args.defaults:
        sys.stdout.write(config.documented_defaults())
    else:
        sys.stdout.write(config.to_yaml(config.load(args.validate)))
    return 0


def _add_plugged(sub: argparse._SubParsersAction, name: str, module_name: str, help_text: str) -> None:
    parser = _subcommand(sub, name, help_text)

    def run(args: argparse.Namespace) -> int:
        return importlib.import_module(module_name).run(args)

    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        parser.set_defaults(func=lambda args: _unavailable(name))
        return
    module.add_arguments(parser)
    parser.set_defaults(func=run)


def _unavailable(name: str) -> int:
    print(f"meshobs {name}: not available in this build", file=sys.stderr)
    return 2


class _CommandFormatter(logging.Formatter):
    """`meshobs build: warning: ...`: a one-shot command's log lines read like its errors."""

    def __init__(self, command: str) -> None:
        super().__init__()
        self.command = command

    def format(self, record: logging.LogRecord) -> str:
        text = f"meshobs {self.command}: {record.levelname.lower()}: {record.getMessage()}"
        return text + ("\n" + self.formatException(record.exc_info) if record.exc_info else "")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="meshobs",
        description="Dashboards, alert rules, log/trace pipelines and a security exporter for service meshes.",
    )
    top.add_argument("--version", action="version", version=f"meshobs {__version__}")
    _verbose_flag(top)
    sub = top.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _add_build(sub)
    _add_check(sub)
    _add_config(sub)
    for name, (module_name, help_text) in _PLUGGED_COMMANDS.items():
        _add_plugged(sub, name, module_name, help_text)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    handler = logging.StreamHandler()
    # the exporter runs for days: its lines say which part logged
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s") if args.command == "exporter"
                         else _CommandFormatter(args.command))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, handlers=[handler])
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except MeshobsError as exc:
        print(f"meshobs {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
