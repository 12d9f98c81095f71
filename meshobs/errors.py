"""Every error meshobs raises on purpose.

    MeshobsError                 base; the CLI prints it and exits non-zero
    ├── ConfigError              a bad meshobs.yaml: names the key and the reason (exit 2)
    │   └── ConfigErrors         several of them, each with its key, reported at once
    ├── BuildError               rendering failed; nothing was written (exit 1)
    ├── CheckError               generated artefacts fail a static check (exit 1)
    ├── ToolNotFoundError        an external binary (promtool, envoy...) is missing
    ├── AccessLogParseError      an access-log line does not match the record: names line and field
    ├── VerifyError              `meshobs verify` cannot run (no rendered files, Prometheus unreachable)
    └── ExporterError            the exporter cannot start (bad flag, bad targets file)
        └── TargetsFileError     a file_sd targets file is malformed: names file and entry
"""


class MeshobsError(Exception):
    """Base class of the errors meshobs raises on purpose."""

    exit_code = 1


class ConfigError(MeshobsError):
    """A configuration value is wrong; `key` is its dotted path."""

    exit_code = 2

    def __init__(self, key: str, reason: str, source: str = "") -> None:
        self.key = key
        self.reason = reason
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{key}: {reason}")


class ConfigErrors(ConfigError):
    """Several configuration values are wrong; `errors` holds each, each with its dotted key."""

    def __init__(self, errors: list[ConfigError], source: str = "") -> None:
        self.errors = errors
        lines = "".join(f"\n  {error.key}: {error.reason}" for error in errors)
        MeshobsError.__init__(self, f"{source + ': ' if source else ''}{len(errors)} errors:{lines}")
        self.key, self.reason, self.source = errors[0].key, errors[0].reason, source


class BuildError(MeshobsError):
    """Rendering the artefacts failed; the output folder was left untouched."""


class CheckError(MeshobsError):
    """Generated artefacts fail a static check."""


class ToolNotFoundError(MeshobsError):
    """An external program that meshobs needs is not installed."""

    def __init__(self, tool: str, hint: str) -> None:
        self.tool = tool
        super().__init__(f"{tool} not found on PATH: {hint}")


class AccessLogParseError(MeshobsError):
    """An access-log line does not match the meshobs record; `field` is None when the whole
    line is unreadable."""

    def __init__(self, lineno: int, field: str | None, reason: str) -> None:
        self.lineno = lineno
        self.field = field
        self.reason = reason
        where = f"line {lineno}, field {field}" if field else f"line {lineno}"
        super().__init__(f"access log {where}: {reason}")


class VerifyError(MeshobsError):
    """`meshobs verify` cannot run at all (as opposed to a query that fails, which it reports)."""

    exit_code = 2


class ExporterError(MeshobsError):
    """The exporter cannot start as asked."""

    exit_code = 2


class TargetsFileError(ExporterError):
    """A file_sd targets file is malformed."""
