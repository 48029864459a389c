"""bench transfer: our upload/download vs raw `ssh host 'cat > f'` / `ssh host cat f`, real sshd.

    python bench/transfer.py [--adapter-mb 256] [--jsonl-mb 200] [--runs 3]

Starts an OpenSSH sshd on 127.0.0.1 (as the tests do; needs root and openssh-server), then moves a
random file (an adapter: incompressible) and a JSONL through our transport in direct mode (raw bytes),
gateway-exec mode (base64 over `ssh -T`) and gateway-pty mode (base64 lines through one framed
`ssh -tt` shell session, what a PTY-only gateway allows), and through raw ssh. Ratios are raw time / our
time (1.0 = as fast as raw ssh). Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.clean import make_dataset  # noqa: E402
from tasks.transport.connection import PtyConnection, SshConnection  # noqa: E402
from tests.doubles.sshpod import Sshd  # noqa: E402


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--adapter-mb", type=float, default=256)
    parser.add_argument("--jsonl-mb", type=float, default=200)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sshd = Sshd(tmp / "sshd").start()
        try:
            local, pod = tmp / "local", tmp / "pod"
            local.mkdir()
            pod.mkdir()
            files = {"adapter.bin": None, "data.jsonl": None}
            with (local / "adapter.bin").open("wb") as fh:
                for _ in range(int(args.adapter_mb)):
                    fh.write(os.urandom(1 << 20))
            make_dataset(local / "data.jsonl", int(args.jsonl_mb * 1024 * 1024))
            for name in files:
                files[name] = (local / name).stat().st_size
            conns = {
                mode: (PtyConnection if mode == "gateway-pty" else SshConnection)(
                    user="root", host="127.0.0.1", port=sshd.port, key_path=str(sshd.client_key),
                    known_hosts=tmp / "known_hosts", mode=mode)
                for mode in ("direct", "gateway-exec", "gateway-pty")
            }
            # The obvious alternative, as a person would type it: plain ssh, default cipher and options.
            plain = (f"ssh -T -p {sshd.port} -i {sshd.client_key} -o BatchMode=yes "
                     f"-o UserKnownHostsFile={tmp / 'known_hosts'} -o StrictHostKeyChecking=accept-new root@127.0.0.1")
            results: dict[str, dict[str, list[float]]] = {}

            def add(key: str, seconds: float) -> None:
                results.setdefault(key, {"s": []})["s"].append(seconds)

            for _ in range(args.runs):
                for name, size in files.items():
                    src, dst = local / name, pod / name
                    add(f"{name} upload raw", timed(lambda: subprocess.run(
                        f"{plain} 'cat > {dst}' < {src}", shell=True, check=True)))
                    for mode, conn in conns.items():
                        add(f"{name} upload {mode}", timed(lambda: conn.send_tree(local, [name], str(pod / 'in'),
                                                                             str(pod / 'run'), "replace")))
                        assert (pod / "in" / name).stat().st_size == size
                    back = tmp / "back"
                    add(f"{name} download raw", timed(lambda: subprocess.run(
                        f"{plain} 'cat {dst}' > {back}", shell=True, check=True)))
                    for mode, conn in conns.items():
                        partial = tmp / f"{name}.{mode}.b64"
                        partial.unlink(missing_ok=True)
                        add(f"{name} download {mode}", timed(lambda: conn.fetch_base64(str(dst), partial)[0]))
                        conn.close()
                        assert partial.stat().st_size == 4 * -(-size // 3)
                    for path in (pod / name, back):
                        path.unlink()
        finally:
            sshd.stop()

    figures: dict[str, object] = {"bench": "transfer", "runs": args.runs,
                                  "sizes_mb": {k: round(v / 1e6, 1) for k, v in files.items()}}
    print(f"{'case':32} {'min s':>6} {'median':>7} {'max s':>6} {'MB/s':>5} {'vs raw (median)':>16} {'(min)':>6}")
    for key, value in results.items():
        name, direction, mode = key.split()
        med = statistics.median(value["s"])
        raw_med = statistics.median(results[f"{name} {direction} raw"]["s"])
        ratio = raw_med / med
        ratio_min = min(results[f"{name} {direction} raw"]["s"]) / min(value["s"])
        mbs = files[name] / 1e6 / med
        figures[key.replace(" ", "_")] = {"min_s": round(min(value["s"]), 3), "median_s": round(med, 3),
                                          "max_s": round(max(value["s"]), 3), "ratio_vs_raw": round(ratio, 2),
                                          "ratio_vs_raw_of_mins": round(ratio_min, 2)}
        print(f"{key:32} {min(value['s']):6.2f} {med:7.2f} {max(value['s']):6.2f} {mbs:5.0f} {ratio:16.2f} {ratio_min:6.2f}")
    self_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    figures["peak_rss_mb"] = {"python": round(self_rss, 1), "largest_child": round(child_rss, 1)}
    print(f"peak RSS: this process {self_rss:.0f} MB, largest child (ssh/tar/base64) {child_rss:.0f} MB")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
