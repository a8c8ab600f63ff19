"""`make run`: the whole thing on one machine, then a demo campaign flowing through it.

Starts (or reuses) local Kafka and the MongoDB-compatible server with dev/stack.py, runs
`campaign-ledger serve` as a child process, waits for it to be ready, sends a realistic
campaign with dev/demo.py, prints where to look, and keeps serving until Ctrl-C, when it stops
the service (SIGTERM: readiness off, in-flight batch finished) and the local servers.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from dev import jaeger, stack

REPO = Path(__file__).resolve().parent.parent


def wait_ready(url: str, service: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.poll() is not None:
            raise SystemExit(f"the service exited with code {service.returncode} while starting")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise SystemExit(f"the service was not ready within {timeout:.0f}s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make run")
    parser.add_argument("--port", type=int, default=int(os.environ.get("HTTP_PORT", "8080")))
    parser.add_argument("--campaigns", type=int, default=2)
    parser.add_argument("--keep-servers", action="store_true", help="leave Kafka/Mongo up")
    parser.add_argument("--tracing", action="store_true", help="export traces to a local Jaeger")
    args = parser.parse_args(argv)

    print("starting local Kafka and the MongoDB-compatible server …", flush=True)
    if stack.main(["up"]) != 0:
        return 1
    config = stack.StackConfig.load(stack.STACK_DIR)
    env = dict(os.environ)
    for line in stack.env_lines(config):
        key, _, value = line.partition("=")
        env[key] = value
    env.update(HTTP_PORT=str(args.port), LOG_FORMAT=env.get("LOG_FORMAT", "console"))
    url = f"http://127.0.0.1:{args.port}"
    traces = jaeger.for_service(env) if args.tracing else None

    print("starting campaign-ledger serve …", flush=True)
    service = subprocess.Popen([sys.executable, "-m", "service", "serve"], env=env, cwd=REPO)
    try:
        wait_ready(url, service)
        print(f"the console is at {url}/ : open it now to watch the demo arrive live", flush=True)
        demo = subprocess.run(
            [
                sys.executable,
                "-m",
                "dev.demo",
                "--bootstrap",
                env["KAFKA_BOOTSTRAP_SERVERS"],
                "--campaigns",
                str(args.campaigns),
                "--http",
                url,
            ],
            env=env,
            cwd=REPO,
            check=False,
        )
        print()
        print(f"campaign-ledger is serving on {url}")
        print(f"  console       {url}/   (live campaigns, versions, audits, dead letters)")
        print(f"  live stream   {url}/campaigns/<campaign_id>/stream   all: {url}/stream")
        print(f"  snapshots     {url}/campaigns/<campaign_id>/snapshot  (ids printed above)")
        print(f"  campaigns     {url}/campaigns")
        print(f"  API spec      {url}/openapi.json   events: {url}/asyncapi.json")
        print(f"  metrics       {url}/metrics")
        if traces is not None:
            print(f"  traces        {traces.query_url}/   (Jaeger: query API and trace view)")
        if demo.returncode != 0:
            print(f"(the demo exited with code {demo.returncode}; see its output above)")
        print("Ctrl-C stops the service and the local servers.", flush=True)
        service.wait()
    except KeyboardInterrupt:
        print("\nstopping …", flush=True)
    finally:
        if service.poll() is None:
            service.send_signal(signal.SIGTERM)
            try:
                service.wait(timeout=40)
            except subprocess.TimeoutExpired:
                service.kill()
        if traces is not None:
            traces.stop()
        if not args.keep_servers:
            stack.main(["down"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
