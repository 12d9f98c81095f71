"""Pieces of `meshobs verify` that need no Prometheus: Grafana variable syntax, file loading,
the PNG writer and the command's start-up errors."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from meshobs import cli
from meshobs.verify import sources
from meshobs.verify.png import chart
from meshobs.verify.sources import Variable
from meshobs.verify.variables import Timing, format_values, substitute

FIXTURES = Path(__file__).parent / "fixtures"


def variable(multi=False, include_all=False, all_value=None) -> Variable:
    return Variable("namespace", "query", "", multi, include_all, all_value)


def test_all_values_are_a_regex_alternation_escaped_like_grafana():
    """With All selected, Grafana writes `(a|b)` with regex characters escaped; a custom allValue wins."""
    assert format_values(variable(multi=True, include_all=True), ["shop", "a.b"]) == r"(shop|a\.b)"
    assert format_values(variable(include_all=True), ["shop"]) == "shop"
    assert format_values(variable(include_all=True, all_value=".*"), ["shop", "x"]) == ".*"
    assert format_values(variable(), ["shop", "x"]) == "shop"


def test_substitution_covers_grafana_syntaxes_and_leaves_unknown_names():
    """$x, ${x}, ${x:fmt} and [[x]] are replaced; unknown names ($1 in label_replace, $0.99) stay, as in Grafana."""
    values = {"ns": "shop", "__rate_interval": "4s"}
    text = 'rate(x{a="$ns",b="${ns}",c="${ns:regex}",d="[[ns]]",q=~"$0.99"}[$__rate_interval]) "$1"'
    assert substitute(text, values) == 'rate(x{a="shop",b="shop",c="shop",d="shop",q=~"$0.99"}[4s]) "$1"'


def test_rate_interval_follows_grafana():
    """$__rate_interval is max($__interval + scrape interval, 4 x scrape interval)."""
    assert Timing(scrape=15, step=30, range=3600).builtins()["__rate_interval"] == "60s"
    assert Timing(scrape=15, step=60, range=3600).builtins()["__rate_interval"] == "75s"
    assert Timing(scrape=1, step=1, range=120).builtins()["__rate_interval"] == "4s"
    assert Timing(scrape=1, step=1, range=120).builtins()["__range"] == "120s"


def test_panels_inside_collapsed_rows_are_loaded_and_hidden_targets_are_not():
    """Queries come from rows' nested panels too, named by file, dashboard, panel and refId; hidden targets are left out."""
    queries = sources.load(FIXTURES)
    panels = [(q.item, q.ref) for q in queries if q.kind == "panel"]
    assert panels == [("Good", "A"), ("Broken", "A"), ("Renamed", "A"), ("Masked", "A"), ("Denied requests log", "A"),
                      ("Short window", "A"), ("Firing alerts", "A"), ("Requests by zone", "A"), ("Denials", "A"), ("Requests", "A")]
    rules = [(q.kind, q.item) for q in queries if q.kind != "panel"]
    assert rules == [("record", "namespace:demo_requests:rate1m"), ("alert", "DemoNoTraffic"), ("alert", "DemoDenials")]
    assert queries[0].where == "dashboards/demo/demo.json: Demo / panel 'Good' [A]"
    assert [v.name for v in queries[0].variables] == ["datasource", "namespace", "service"]


def _pixels(png: bytes) -> tuple[int, int, bytes]:
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", png[16:24])
    at, data = 8, b""
    while at < len(png):
        length, kind = struct.unpack(">I4s", png[at:at + 8])
        if kind == b"IDAT":
            data += png[at + 8:at + 8 + length]
        at += 12 + length
    return width, height, zlib.decompress(data)


def test_chart_is_a_valid_png_with_each_series_in_its_colour():
    """The PNG decodes to width x height RGB rows, and both series' colours are drawn."""
    png = chart([[(0, 0), (10, 5)], [(0, 5), (10, 1)]], width=100, height=50)
    width, height, raw = _pixels(png)
    assert (width, height) == (100, 50)
    assert len(raw) == height * (1 + width * 3)
    assert bytes((31, 119, 180)) in raw and bytes((255, 127, 14)) in raw
    assert chart([[(0, 0), (10, 5)], [(0, 5), (10, 1)]], width=100, height=50) == png  # deterministic


def test_unreachable_prometheus_is_a_clear_error(capsys):
    """A Prometheus that does not answer stops verify with exit 2 and names the URL."""
    assert cli.main(["verify", "--prometheus", "http://127.0.0.1:9", "--dir", str(FIXTURES)]) == 2
    assert capsys.readouterr().err == (
        "meshobs verify: error: Prometheus at http://127.0.0.1:9 is not reachable: [Errno 111] Connection refused\n"
    )


def test_a_folder_without_rendered_files_is_a_clear_error(tmp_path, capsys):
    """A --dir without dashboards/<mesh> or alerts/<mesh> says to run `meshobs build`."""
    assert cli.main(["verify", "--prometheus", "http://127.0.0.1:9", "--dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        f"meshobs verify: error: {tmp_path}: no dashboards/<mesh>/ or alerts/<mesh>/ folder; "
        f"run `meshobs build --out {tmp_path}`\n"
    )


def test_an_unknown_mesh_is_a_clear_error(capsys):
    """--mesh naming a mesh with nothing rendered fails with exit 2."""
    assert cli.main(["verify", "--prometheus", "http://127.0.0.1:9", "--dir", str(FIXTURES), "--mesh", "kuma"]) == 2
    assert capsys.readouterr().err == f"meshobs verify: error: {FIXTURES}: nothing rendered for mesh 'kuma'\n"


@pytest.mark.parametrize("value", ["5", "fast"])
def test_bad_durations_are_rejected_by_argparse(value, capsys):
    """--range takes a Prometheus duration."""
    with pytest.raises(SystemExit):
        cli.main(["verify", "--prometheus", "http://x", "--range", value])
    assert f"argument --range: '{value}' is not a Prometheus duration such as 30s, 5m, 1h or 7d" in capsys.readouterr().err


def test_a_bad_evaluation_time_is_rejected_by_argparse(capsys):
    """--at takes unix seconds or an RFC 3339 time."""
    with pytest.raises(SystemExit):
        cli.main(["verify", "--prometheus", "http://x", "--at", "yesterday"])
    assert "argument --at: 'yesterday' is neither unix seconds nor an RFC 3339 time" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["verify", "--prometheus"], ["check", "--prometheus"]])
def test_a_prometheus_url_without_scheme_is_rejected_by_argparse(command, capsys):
    """`--prometheus localhost:9090` (no scheme) is refused before anything is asked, naming the form expected."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*command, "localhost:9090"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"meshobs {command[0]}: error: argument --prometheus: 'localhost:9090': expected the Prometheus base URL, "
        "e.g. http://127.0.0.1:9090")
