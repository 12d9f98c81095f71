"""The exporter flags that are meshobs.yaml settings: one table, read by the CLI (whose defaults
are the configuration's defaults) and by the deploy renderer (which passes every one of them), so
the exporter in a cluster uses exactly the thresholds its alerts were rendered with."""

from __future__ import annotations

import argparse
import dataclasses
import typing
from dataclasses import dataclass
from typing import Any

from meshobs import config


def _lookup(root: Any, key: str) -> tuple[Any, dataclasses.Field]:
    """The section object holding dotted `key` under `root`, and the key's field."""
    *sections, name = key.split(".")
    owner = root
    for section in sections:
        owner = getattr(owner, section)
    return owner, next(f for f in dataclasses.fields(owner) if f.name.rstrip("_") == name)


@dataclass(frozen=True)
class ConfigFlag:
    flag: str
    key: str  # dotted meshobs.yaml key
    metavar: str

    @property
    def dest(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_")

    @property
    def kind(self) -> type:
        owner, field = _lookup(config.Config(), self.key)
        return typing.get_type_hints(type(owner))[field.name]

    def value(self, cfg: config.Config) -> Any:
        owner, field = _lookup(cfg, self.key)
        return getattr(owner, field.name)

    @property
    def default(self) -> Any:
        return self.value(config.Config())

    @property
    def help(self) -> str:
        doc = _lookup(config.Config(), self.key)[1].metadata["doc"]
        # argparse formats help with %: a literal one (as in "50-90%") is doubled
        return f"{doc} (meshobs.yaml {self.key}; default {text(self.default)})".replace("%", "%%")

    def parse(self, raw: str) -> float:
        """A flag's text as the exporter uses it (durations in seconds), checked as meshobs.yaml
        checks the key; argparse turns the error into a usage error naming the flag."""
        kind = self.kind
        value: Any = raw
        if kind is float:
            try:
                value = float(raw)
            except ValueError:
                raise argparse.ArgumentTypeError(f"{raw!r}: expected a number") from None
        check = _lookup(config.Config(), self.key)[1].metadata.get("check")
        reason = check(value) if check else None
        if reason:
            raise argparse.ArgumentTypeError(f"{raw!r} {reason}")
        return config.duration_seconds(value) if kind is str else value


def text(value: Any) -> str:
    """A setting as a command-line argument: durations as written, numbers exactly (repr)."""
    return value if isinstance(value, str) else repr(value)


CONFIG_FLAGS = (
    ConfigFlag("--scrape-interval", "deploy.scrape_interval", "DURATION"),
    ConfigFlag("--burst-denials-per-second", "alerts.unauthorized_burst.absolute_denials_per_second", "RATE"),
    ConfigFlag("--burst-factor", "alerts.unauthorized_burst.factor", "X"),
    ConfigFlag("--burst-min-denials-per-second", "alerts.unauthorized_burst.min_denials_per_second", "RATE"),
    ConfigFlag("--burst-baseline-window", "alerts.unauthorized_burst.baseline_window", "DURATION"),
    ConfigFlag("--ca-expiry-window", "alerts.cert_expiry.warning", "DURATION"),
    ConfigFlag("--leaf-warning-fraction", "alerts.cert_expiry.leaf_warning_fraction", "FRACTION"),
)


def arguments(cfg: config.Config) -> list[str]:
    """Every configured flag with its value in `cfg`, for the rendered container args."""
    return [part for flag in CONFIG_FLAGS for part in (flag.flag, text(flag.value(cfg)))]
