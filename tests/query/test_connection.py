"""Usage and connection errors of the terminal commands: exit code 2 and one line saying what is
wrong (no Prometheus, unreachable, no meshobs rules, a mesh without rules, bad options), and the
bearer token and CA options against a real Prometheus behind a token-checking TLS proxy; and two
meshes in one Prometheus."""

from __future__ import annotations

import json
import ssl
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from meshobs import build, config
from meshobs.render import rules
from tests.exporter.running import start_exporter
from tests.query.conftest import meshobs
from tests.support import meshdata
from tests.support.pki import CA
from tests.support.procs import free_port
from tests.support.prom import start_prometheus
from tests.verify import stack
from tests.verify.replay import Replay

TOKEN = "s3cret-token"


@pytest.fixture
def istio_rules_only(processes, tmp_path):
    """A real Prometheus with Istio's rendered recording rules and no data."""
    rendered = rules.render(config.Config(), build.select_meshes(["istio"])[0])
    path = tmp_path / "istio-recording-rules.yaml"
    path.write_bytes(rendered["alerts/istio/recording-rules.yaml"])
    return start_prometheus(processes, tmp_path, {}, rule_files=[path])


def test_no_prometheus_given(monkeypatch):
    """Without --prometheus or $MESHOBS_PROMETHEUS_URL the command says how to give one and exits 2."""
    monkeypatch.delenv("MESHOBS_PROMETHEUS_URL", raising=False)
    printed = meshobs("stat")
    assert (printed.code, printed.out) == (2, "")
    assert printed.err == "meshobs stat: error: no Prometheus: give --prometheus URL or set MESHOBS_PROMETHEUS_URL\n"


def test_unreachable_prometheus():
    """A Prometheus that does not answer is named in one line, exit 2."""
    url = f"http://127.0.0.1:{free_port()}"
    printed = meshobs("tls", "--prometheus", url)
    assert printed.code == 2
    assert printed.err == f"meshobs tls: error: Prometheus at {url} is not reachable: [Errno 111] Connection refused\n"


def test_prometheus_without_meshobs_rules(processes, tmp_path):
    """A Prometheus with no meshobs recording rules loaded is an error saying what to load, exit 2."""
    prometheus = start_prometheus(processes, tmp_path, {})
    printed = meshobs("authz", "--prometheus", prometheus.url)
    assert printed.code == 2
    assert printed.err == (f"meshobs authz: error: Prometheus at {prometheus.url} has no meshobs recording rules loaded "
                           "(load alerts/<mesh>/recording-rules.yaml from `meshobs build`)\n")


def test_mesh_without_rules_and_unknown_mesh(istio_rules_only):
    """Asking for a mesh whose rules are not loaded names the meshes that are; an unknown mesh is a usage error."""
    url = istio_rules_only.url
    printed = meshobs("certs", "--prometheus", url, "--mesh", "linkerd")
    assert printed.code == 2
    assert printed.err == (f"meshobs certs: error: Prometheus at {url} has no meshobs recording rules for mesh "
                           "'linkerd' (it has: istio)\n")
    unknown = meshobs("stat", "--prometheus", url, "--mesh", "kuma")
    assert unknown.code == 2
    assert unknown.err.splitlines()[-1] == (
        "meshobs stat: error: argument --mesh: invalid choice: 'kuma' (choose from 'consul', 'istio', 'linkerd')")


def test_no_traffic_yet_prints_an_empty_table(istio_rules_only):
    """Rules loaded but no data: the table says so, the JSON has empty lists, exit 0."""
    printed = meshobs("stat", "--prometheus", istio_rules_only.url)
    assert (printed.code, printed.out, printed.err) == (0, "no workload has recorded traffic in this scope\n", "")


@pytest.mark.parametrize("argv, message", [
    (("stat", "--window", "2d"), "--window 2d: must be between 1m and 1d"),
    (("stat", "--window", "5x"), "--window: '5x' is not a Prometheus duration such as 30s, 5m, 1h or 7d"),
    (("tls", "--fail-if", "bogus"), "--fail-if bogus: unknown condition (choose from plaintext, tls-failures, mtls-below)"),
    (("tls", "--fail-if", "mtls-below"), "--fail-if mtls-below: write it as mtls-below=RATIO"),
    (("tls", "--fail-if", "plaintext=1"), "--fail-if plaintext=1: write it as plaintext"),
    (("tls", "--fail-if", "mtls-below=2"), "--fail-if mtls-below=2: '2' is not a ratio between 0 and 1 (or a percentage)"),
    (("certs", "--fail-if", "expires-within=soon"),
     "--fail-if expires-within=soon: 'soon' is not a Prometheus duration such as 30s, 5m, 1h or 7d"),
    (("stat", "-n", 'shop"} or vector(1) #'),
     "--namespace: 'shop\"} or vector(1) #' is not a valid name (letters, digits, '-', '_', '.', ':')"),
    (("stat", "pods/web"), "stat: 'pods/web' is not workload, service, workload/NAME or service/NAME (or deploy/NAME, svc/NAME)"),
    (("stat", "--prometheus", "prometheus:9090"),
     "--prometheus: 'prometheus:9090' is not an http(s) URL such as http://prometheus:9090"),
])
def test_bad_options(argv, message, istio_rules_only):
    """A bad option value is named with the reason on one line, exit 2, before anything is printed."""
    command = argv[0]
    url = [] if "--prometheus" in argv else ["--prometheus", istio_rules_only.url]
    printed = meshobs(*argv, *url)
    assert (printed.code, printed.out) == (2, "")
    assert printed.err == f"meshobs {command}: error: {message}\n"


class TokenProxy:
    """A TLS reverse proxy in front of Prometheus that forwards only requests bearing TOKEN (as
    kube-rbac-proxy or an oauth proxy do in front of a cluster's Prometheus)."""

    def __init__(self, upstream: str, ca: CA):
        issued = ca.issue("localhost", dns=("localhost",))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(issued.cert, issued.key)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    self.send_error(401)
                    return
                with urllib.request.urlopen(upstream + self.path, timeout=10) as answer:
                    body = answer.read()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):  # keep test output clean
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"https://localhost:{self.server.server_port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_bearer_token_and_ca_file(istio_rules_only, tmp_path, request):
    """--token / --token-file and --ca-file reach a Prometheus behind TLS and a token check; a wrong token is refused in one line."""
    ca = CA(tmp_path)
    proxy = TokenProxy(istio_rules_only.url, ca)
    request.addfinalizer(proxy.stop)
    (tmp_path / "token").write_text(TOKEN + "\n")

    with_token = meshobs("stat", "--prometheus", proxy.url, "--ca-file", str(ca.cert_path), "--token", TOKEN)
    assert (with_token.code, with_token.err) == (0, "")
    from_file = meshobs("stat", "--prometheus", proxy.url, "--ca-file", str(ca.cert_path),
                        "--token-file", str(tmp_path / "token"), "-o", "json")
    assert (from_file.code, from_file.err) == (0, "")
    wrong = meshobs("stat", "--prometheus", proxy.url, "--ca-file", str(ca.cert_path), "--token", "nope")
    assert wrong.code == 2
    assert wrong.err == f"meshobs stat: error: Prometheus at {proxy.url} refused access: HTTP 401 (check --token)\n"
    untrusted = meshobs("stat", "--prometheus", proxy.url, "--token", TOKEN)
    assert untrusted.code == 2
    assert untrusted.err.startswith(f"meshobs stat: error: Prometheus at {proxy.url} is not reachable: "
                                    "[SSL: CERTIFICATE_VERIFY_FAILED]")


def test_one_prometheus_for_two_meshes(processes, tmp_path, request):
    """With Istio's and Linkerd's data and rules in one Prometheus, every mesh's rows come labelled with their mesh and --mesh keeps one."""
    targets = meshdata.istio(time.time()) + meshdata.linkerd(time.time())
    served = Replay.start(request, targets).addresses()
    rule_files = []
    for mesh in ("istio", "linkerd"):
        out = stack.render(tmp_path / mesh, mesh)
        rule_files += sorted((out / "alerts" / mesh).glob("*.yaml"))
    entries = [{"address": address, "mesh": t.mesh, "namespace": t.labels["namespace"], "workload": t.workload,
                "path": t.path} for t, address in served if t.proxy]
    exporter = start_exporter(processes, tmp_path, "--targets-file", str(stack.exporter_targets(tmp_path / "t.json", entries)),
                              "--scrape-interval", "500ms")
    jobs = {f"{mesh}-proxies": [stack.static_config(address, __metrics_path__=t.path, **t.labels)
                                for t, address in served if t.mesh == mesh] for mesh in ("istio", "linkerd")}
    jobs["meshobs-exporter"] = [stack.static_config(f"127.0.0.1:{exporter.port}")]
    prometheus = start_prometheus(processes, tmp_path, jobs, rule_files=rule_files)
    stack.wait_for_data(prometheus, None)

    at = f"{time.time():.3f}"  # one time for both answers
    both = json.loads(meshobs("stat", "--prometheus", prometheus.url, "--at", at, "-o", "json").out)["workloads"]
    assert {(r["mesh"], r["namespace"]) for r in both if r["requests_per_second"] > 0} == {
        ("istio", "shop"), ("istio", "payments"), ("linkerd", "emojivoto"), ("linkerd", "booksapp")}
    linkerd = json.loads(meshobs("stat", "--prometheus", prometheus.url, "--at", at, "--mesh", "linkerd",
                                 "-o", "json").out)["workloads"]
    assert linkerd and {r["mesh"] for r in linkerd} == {"linkerd"}
    assert [r for r in both if r["mesh"] == "linkerd"] == linkerd
