"""Server memory under cookieless GETs: each one is a new visitor, as a loop of `curl` would be.

Prints the page server's RSS before and after N requests (in-process, Starlette's TestClient), so a
per-visitor state that grows without bound shows as MB per 20,000 requests.

    .venv/bin/python bench/sessions.py --requests 100000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=100_000)
    args = parser.parse_args()
    from starlette.testclient import TestClient

    from tasks.context import RunContext
    from tasks.web.app import create_app

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "fullcycle.toml").write_text('[training]\nbase_model = "tiny"\n')
        os.environ["FULLCYCLE_CONFIG"] = str(Path(tmp) / "fullcycle.toml")
        app = create_app(RunContext.load(tmp), Path("dodo.py"), Path(tmp), port=8765)
        client = TestClient(app, base_url="http://127.0.0.1:8765")
        client.get("/")
        points, started = [(0, rss_mb())], time.time()
        step = max(args.requests // 5, 1)
        for n in range(1, args.requests + 1):
            client.cookies.clear()
            client.get("/")
            if n % step == 0:
                points.append((n, rss_mb()))
        seconds = time.time() - started
    grown = points[-1][1] - points[0][1]
    print(json.dumps({"bench": "sessions", "requests": args.requests, "seconds": round(seconds, 1),
                      "rss_mb": [[n, round(mb, 1)] for n, mb in points], "grown_mb": round(grown, 1),
                      "mb_per_20000": round(grown * 20_000 / max(args.requests, 1), 2)}))


if __name__ == "__main__":
    main()
