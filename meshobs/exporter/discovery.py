"""Static targets and Prometheus file_sd targets files, and the shard filter over both."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import yaml

from meshobs.errors import ExporterError, TargetsFileError
from meshobs.exporter.normalize import DIALECTS
from meshobs.exporter.targets import Target, guess_mesh, make_target

log = logging.getLogger(__name__)


def read_targets_file(path: Path) -> set[Target]:
    """Targets of a file_sd file (JSON or YAML: YAML reads both)."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise TargetsFileError(f"{path}: cannot read: {exc}") from None
    if document is None:
        return set()
    if not isinstance(document, list):
        raise TargetsFileError(f"{path}: expected a list of {{targets, labels}} entries")
    targets: set[Target] = set()
    for index, entry in enumerate(document):
        where = f"{path}: entry {index}"
        if not isinstance(entry, dict) or not isinstance(entry.get("targets"), list):
            raise TargetsFileError(f"{where}: expected a mapping with a 'targets' list")
        labels = entry.get("labels") or {}
        if not isinstance(labels, dict):
            raise TargetsFileError(f"{where}: 'labels' must be a mapping")
        scheme = labels.get("__scheme__", "http")
        for address in entry["targets"]:
            url = f"{scheme}://{address}"
            mesh = labels.get("mesh") or guess_mesh(url)
            if mesh not in DIALECTS:
                raise TargetsFileError(f"{where}: unknown mesh {mesh!r} (one of {', '.join(sorted(DIALECTS))})")
            path_ = labels.get("__metrics_path__") or DIALECTS[mesh].default_path
            for required in ("namespace", "workload"):
                if not labels.get(required):
                    raise TargetsFileError(f"{where}: label {required!r} is missing")
            try:
                targets.add(make_target(f"{url}{path_}", mesh, labels["namespace"], labels["workload"]))
            except ExporterError as exc:
                raise TargetsFileError(f"{where}: {exc}") from None
    return targets


class TargetsFile:
    """A targets file re-read when its modification time or size changes. A broken rewrite
    keeps the last good targets (logged), so a half-written file never empties the fleet."""

    def __init__(self, path: Path):
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self.targets = read_targets_file(path)
        self._stamp = self._current_stamp()

    def _current_stamp(self) -> tuple[int, int] | None:
        try:
            stat = os.stat(self.path)
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_size)

    def refresh(self) -> set[Target]:
        stamp = self._current_stamp()
        if stamp != self._stamp:
            try:
                self.targets = read_targets_file(self.path)
                log.info("targets file %s: %d target(s)", self.path, len(self.targets))
            except TargetsFileError as exc:
                log.error("keeping the previous %d target(s): %s", len(self.targets), exc)
            self._stamp = stamp
        return self.targets


def parse_shard(text: str) -> tuple[int, int]:
    index, sep, count = text.partition("/")
    if not sep or not index.isdigit() or not count.isdigit() or int(count) < 1 or int(index) >= int(count):
        raise ExporterError(f"--shard {text!r}: expected INDEX/COUNT with 0 <= INDEX < COUNT")
    return int(index), int(count)


def in_shard(targets: set[Target], shard: tuple[int, int]) -> set[Target]:
    index, count = shard
    if count == 1:
        return set(targets)
    return {t for t in targets if t.shard(count) == index}
