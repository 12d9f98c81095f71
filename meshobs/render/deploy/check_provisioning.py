#!/usr/bin/env python3
"""Start Grafana with the rendered provisioning and fail unless it lists every dashboard.

Rendered by meshobs. Usage, from the folder holding deploy/:
    python3 deploy/grafana/check_provisioning.py [--engine docker|podman] [--image IMAGE]
or against a Grafana already started with these files mounted:
    python3 deploy/grafana/check_provisioning.py --url http://127.0.0.1:3000 --logs FILE
Standard library only, so CI needs nothing but Python and a container engine.
"""

import argparse
import base64
import json
import pathlib
import re
import shutil
import subprocess
import sys
import time
import urllib.request

HERE = pathlib.Path(__file__).resolve().parent
# Grafana logs provisioning failures as logfmt lines with a provisioning logger at error level.
ERROR_LINE = re.compile(r"level=(error|crit)\b.*logger=provisioning|logger=provisioning\S*.*level=(error|crit)\b")


def expected_uids(dashboards):
    uids = {}
    for path in sorted(dashboards.glob("*/*.json")):
        uids[json.loads(path.read_text())["uid"]] = path.relative_to(dashboards).as_posix()
    return uids


def listed_uids(url, user, password):
    request = urllib.request.Request(f"{url}/api/search?type=dash-db&limit=5000")
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=5) as response:
        return {item["uid"]: item for item in json.load(response)}


def provisioning_errors(log_text):
    return [line for line in log_text.splitlines() if ERROR_LINE.search(line)]


def wait_for_dashboards(url, user, password, expected, timeout):
    deadline = time.monotonic() + timeout
    listed, last_error = {}, None
    while time.monotonic() < deadline:
        try:
            listed = listed_uids(url, user, password)
            if set(expected) <= set(listed):
                return listed, None
        except OSError as exc:  # not up yet
            last_error = exc
        time.sleep(1)
    return listed, last_error


def start_container(engine, image, port):
    argv = [
        engine, "run", "--detach", "--rm", "--publish", f"127.0.0.1:{port}:3000",
        "--volume", f"{HERE / 'provisioning'}:/etc/grafana/provisioning:ro",
        "--volume", f"{HERE / 'dashboards'}:/var/lib/grafana/dashboards/meshobs:ro",
        "--env", "GF_AUTH_ANONYMOUS_ENABLED=false",
        image,
    ]
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default=shutil.which("docker") and "docker" or "podman")
    parser.add_argument("--image", default="docker.io/grafana/grafana:11.6.0")
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--url", help="check this running Grafana instead of starting one")
    parser.add_argument("--logs", type=pathlib.Path, help="with --url: Grafana's log file to scan for provisioning errors")
    parser.add_argument("--user", default="admin")
    parser.add_argument("--password", default="admin")
    parser.add_argument("--timeout", type=float, default=120)
    args = parser.parse_args()

    expected = expected_uids(HERE / "dashboards")
    if not expected:
        print(f"no dashboards under {HERE / 'dashboards'}", file=sys.stderr)
        return 1
    container = None
    url = args.url
    if url is None:
        container = start_container(args.engine, args.image, args.port)
        url = f"http://127.0.0.1:{args.port}"
    try:
        listed, error = wait_for_dashboards(url, args.user, args.password, expected, args.timeout)
        if container:
            logs = subprocess.run([args.engine, "logs", container], capture_output=True, text=True)
            log_text = logs.stdout + logs.stderr
        else:
            log_text = args.logs.read_text() if args.logs else ""
    finally:
        if container:
            subprocess.run([args.engine, "stop", container], capture_output=True)
    problems = [f"dashboard {uid} ({path}) is not listed by {url}/api/search" for uid, path in expected.items() if uid not in listed]
    if error and problems:
        problems.append(f"last error talking to Grafana: {error}")
    problems += [f"provisioning error logged: {line}" for line in provisioning_errors(log_text)]
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return 1
    print(f"Grafana lists all {len(expected)} dashboards, no provisioning error logged")
    return 0


if __name__ == "__main__":
    sys.exit(main())
