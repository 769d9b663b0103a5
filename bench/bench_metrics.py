"""What the Prometheus instruments cost per request, measured directly.

A request through the gateway makes one ``metrics.observe_http`` call (a
counter and a histogram) in a gateway worker and one ``GrpcMethod.done`` (the
same) in the core. This times both in prometheus_client's multiprocess mode,
as the daemons run them (values in mmapped files), and in its in-memory mode
for comparison: microseconds per call, best of 5 runs of 200,000 calls. Each
mode runs in a fresh process, since prometheus_client picks its value store at
import. Throughput on a shared machine moves by more than this
(bench_gateway.py --baseline measures that too).

    python -m bench.bench_metrics
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

CALLS = 200_000


def child(mode: str) -> None:
    with tempfile.TemporaryDirectory() as directory:
        if mode == "multiprocess":
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
        from appliance import metrics
        grpc = metrics.GrpcMethod("appliance.v1.AuthService", "GetSession", False, False)
        cases = {"gateway: observe_http": lambda: metrics.observe_http("/api/session", "GET", 200, 0.0012),
                 "core: GrpcMethod.done": lambda: grpc.done("OK", 0.0003)}
        for name, call in cases.items():
            call()
            runs = []
            for _ in range(5):
                started = time.perf_counter()
                for _ in range(CALLS):
                    call()
                runs.append((time.perf_counter() - started) / CALLS * 1e6)
            print(f"{mode:<14}{name:<26}{min(runs):>8.2f}")


def main() -> None:
    print(f"{'mode':<14}{'instrument':<26}{'us/call':>8}")
    for mode in ("multiprocess", "in-memory"):
        out = subprocess.run([sys.executable, "-m", "bench.bench_metrics", "--child", mode],
                             capture_output=True, text=True, check=True,
                             cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        print(out.stdout, end="")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2])
    else:
        main()
