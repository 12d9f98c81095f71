"""A structural reader of Fluentd configs, for tests (no Fluentd runs here): directives with
their parameters, balance, known plugin types, and which `<match>` each emitted tag reaches."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Plugin types per directive that the rendered configs may use (core plus the plugins shipped in
# the fluentd-kubernetes-daemonset images: elasticsearch, kubernetes_metadata, rewrite_tag_filter, concat).
KNOWN_TYPES = {
    "source": {"tail", "forward"},
    "filter": {"parser", "kubernetes_metadata", "record_transformer", "grep", "concat"},
    "match": {"rewrite_tag_filter", "copy", "elasticsearch", "forward", "null", "stdout"},
    "store": {"elasticsearch", "forward", "stdout"},
    "parse": {"regexp", "json"},
    "buffer": {"file", "memory"},
}
# Sections that take no @type.
UNTYPED = {"rule", "record", "server", "system", "security", "label", "regexp"}


class FluentConfError(Exception):
    pass


@dataclass
class Directive:
    name: str
    arg: str
    line: int
    params: dict[str, str] = field(default_factory=dict)
    children: list["Directive"] = field(default_factory=list)

    def child(self, name: str) -> "Directive":
        found = [c for c in self.children if c.name == name]
        if len(found) != 1:
            raise FluentConfError(f"line {self.line}: <{self.name}> has {len(found)} <{name}> sections")
        return found[0]


def parse(text: str) -> list[Directive]:
    """Top-level directives; raises on unbalanced or mismatched tags and on duplicate parameters."""
    root = Directive("(root)", "", 0)
    stack = [root]
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if opened := re.fullmatch(r"<([a-z_]+)(?:\s+(.+))?>", line):
            directive = Directive(opened.group(1), opened.group(2) or "", n)
            stack[-1].children.append(directive)
            stack.append(directive)
        elif closed := re.fullmatch(r"</([a-z_]+)>", line):
            if len(stack) == 1 or stack[-1].name != closed.group(1):
                raise FluentConfError(f"line {n}: </{closed.group(1)}> closes <{stack[-1].name}>")
            stack.pop()
        elif param := re.fullmatch(r"(@?[a-z_][a-z0-9_.]*)\s+(.+)", line):
            if param.group(1) in stack[-1].params:
                raise FluentConfError(f"line {n}: {param.group(1)} set twice in <{stack[-1].name}>")
            stack[-1].params[param.group(1)] = param.group(2)
        else:
            raise FluentConfError(f"line {n}: cannot read {line!r}")
    if len(stack) > 1:
        raise FluentConfError(f"line {stack[-1].line}: <{stack[-1].name}> is never closed")
    return root.children


def walk(directives: list[Directive]):
    for d in directives:
        yield d
        yield from walk(d.children)


def unknown_types(directives: list[Directive]) -> list[str]:
    problems = []
    for d in walk(directives):
        kind = d.params.get("@type")
        if d.name in UNTYPED:
            continue
        if kind is None:
            problems.append(f"line {d.line}: <{d.name}> has no @type")
        elif kind not in KNOWN_TYPES.get(d.name, set()):
            problems.append(f"line {d.line}: <{d.name}> has unknown @type {kind}")
    return problems


def tag_pattern(pattern: str) -> re.Pattern:
    """Fluentd match pattern: `*` one tag part, `**` zero or more parts, `{a,b}` alternatives."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith(".**", i):
            out, i = out + r"(?:\..*)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + r"[^.]*", i + 1
        elif pattern[i] == "{":
            end = pattern.index("}", i)
            out, i = out + "(?:" + "|".join(map(re.escape, pattern[i + 1:end].split(","))) + ")", end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def first_match(directives: list[Directive], tag: str) -> Directive | None:
    for d in directives:
        if d.name == "match" and any(tag_pattern(p).fullmatch(tag) for p in d.arg.split()):
            return d
    return None


def emitted_tags(directives: list[Directive], sample_file_tag: str, forward_tags: list[str]) -> list[str]:
    """Tags entering the routing: tail sources (with a sample file tag for `*`), the tags the
    forward source is known to receive, and the tags every rewrite rule can emit."""
    tags = []
    for d in directives:
        if d.name == "source" and d.params["@type"] == "tail":
            tags.append(d.params["tag"].replace("*", sample_file_tag))
        elif d.name == "source" and d.params["@type"] == "forward":
            tags += forward_tags
    for d in walk(directives):
        if d.name == "rule":
            tags.append(d.params["tag"])
    return tags


def unreachable_matches(directives: list[Directive], tags: list[str]) -> list[str]:
    """`<match>` sections that no emitted tag reaches first."""
    reached = {id(m) for m in (first_match(directives, t) for t in tags) if m is not None}
    return [f"line {d.line}: <match {d.arg}>" for d in directives if d.name == "match" and id(d) not in reached]
