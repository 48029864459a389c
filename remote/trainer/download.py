"""The base model's download, a step of its own on the pod, started the moment the Python is there
(the preflight runs beside it): timed, measured in bytes and MB/s, reported as it goes in whole lines,
with the hub's fast path where the pod has the memory for it, and never hung: a download that
receives no byte for `download_stall_s` is stopped and tried once more, then the run fails with what
it got. A failed preflight stops it (SIGTERM): its report then says so, with the bytes it had.

    python -m trainer.download --config C --report download.json

Exit 0 (downloaded, already cached, or nothing to download), 6 (the download failed, stalled or was
stopped). The report is written whole at the end, with its start and end (epoch seconds). The trainer
loads from the hub's cache afterwards (`wait` for it first, when it started beside it): its "model
load" is then only the load.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from trainer import schema
from trainer.config import say

DOWNLOAD_FAILED = 6
FAST_PATH_GB = 32  # hf_xet's high-performance mode uses every core and has OOM-killed a 12 GB node
TRIES = 2  # a stall is retried once: the hub resumes what it had
FILES = ["*.json", "*.safetensors", "*.model", "*.tiktoken", "*.txt", "*.jinja", "*.py"]  # weights, config, tokenizer
WEIGHTS = "*.safetensors"  # what a sharded training's other nodes never read: rank 0 alone reads the checkpoint


class DownloadFailed(Exception):
    exit_code = DOWNLOAD_FAILED

    def __init__(self, message: str, got: int = 0) -> None:
        super().__init__(message)
        self.got = got  # the bytes that did arrive, for the record


class Stopped(DownloadFailed):
    """The run ended the download (SIGTERM: the preflight or the trainer failed beside it)."""


def _stop(_signum, _frame) -> None:
    raise Stopped("stopped before it finished: the run ended beside it (a failed preflight or trainer)")


def size(count: float) -> str:
    """Bytes as a person reads them."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count:.0f} B"


def hf_home() -> Path:
    return Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface")


def folder_bytes(root: Path) -> int:
    """Every byte under `root` (blobs, the hub's .incomplete files, hf_xet's chunk cache): what arrived."""
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                pass
    return total


def memory_gb(root: Path = Path("/")) -> float | None:
    """The memory this pod may use: the least of its cgroup's limit (v2 `memory.max`, or v1
    `memory.limit_in_bytes`, whichever the host runs) and what the kernel says is available. In a
    container /proc/meminfo describes the whole host, so it alone would let a pod capped at 46 GB
    take the fast path on a 1 TB machine and be killed for memory."""
    found = [gb for gb in (_limit(root / "sys/fs/cgroup/memory.max"),
                           _limit(root / "sys/fs/cgroup/memory/memory.limit_in_bytes"),
                           _available(root / "proc/meminfo")) if gb is not None]
    return min(found) if found else None


def _limit(path: Path) -> float | None:
    """A cgroup's memory limit in GB; None for none ("max", or v1's near-2**63 "unlimited")."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) / 1e9 if text.isdigit() and int(text) < 1 << 60 else None


def _available(path: Path) -> float | None:
    try:
        for line in path.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024 / 1e9
    except (OSError, ValueError, IndexError):
        pass
    return None


class Progress:
    """Says how far the download is every `every` seconds, and notices when no byte came for `stall_s`."""

    def __init__(self, root: Path, expected: int, every: float, stall_s: float) -> None:
        self.root, self.expected, self.every, self.stall_s = root, expected, every, stall_s
        self.start = self.last_size = folder_bytes(root)
        self.last_growth = self.started = time.monotonic()

    def sample(self) -> None:
        """One walk of the cache per tick: the stall check, the progress line and the report read it."""
        now = folder_bytes(self.root)
        if now != self.last_size:
            self.last_size, self.last_growth = now, time.monotonic()

    def got(self) -> int:
        return max(self.last_size - self.start, 0)

    def stalled(self) -> bool:
        self.sample()
        return time.monotonic() - self.last_growth > self.stall_s

    def line(self) -> str:
        got, seconds = self.got(), time.monotonic() - self.started
        rate = got / seconds if seconds > 0 else 0.0
        text = f"downloading the base model: {size(got)}"
        if self.expected:
            left = max(self.expected - got, 0)
            text += f" of {size(self.expected)}" + (f", ~{left / rate / 60:.0f} min left" if rate > 0 else "")
        return f"{text} ({rate / 1e6:.1f} MB/s, {seconds:.0f}s)"


def _once(repo: str, progress: Progress, env: dict[str, str], files: list[str]) -> bool:
    """One try in a child process (a hung download can be stopped, a thread cannot): True when it
    finished, False when it stalled and was stopped. Raises DownloadFailed when the hub said no."""
    code = ("import sys; from huggingface_hub import snapshot_download; "
            "snapshot_download(sys.argv[1], allow_patterns=sys.argv[2].split(','))")
    said = Path("download.log")  # the child's own words, for the error; a pipe nobody reads would fill and hang it
    with said.open("w") as out:
        child = subprocess.Popen([sys.executable, "-c", code, repo, ",".join(files)], stdout=out,
                                 stderr=subprocess.STDOUT, env={**env, "HF_HUB_DISABLE_PROGRESS_BARS": "1"})
    progress.last_growth = last_said = time.monotonic()  # each try has its own stall clock
    try:
        while child.poll() is None:
            time.sleep(min(1.0, progress.stall_s / 4))
            if progress.stalled():
                child.kill()
                child.wait()
                return False
            if time.monotonic() - last_said >= progress.every:
                say(progress.line())
                last_said = time.monotonic()
    except Stopped as stopped:
        child.kill()
        child.wait()
        progress.sample()
        raise Stopped(str(stopped), progress.got()) from None
    if child.returncode != 0:
        lines = said.read_text(errors="replace").strip().splitlines()
        raise DownloadFailed(f"the hub refused {repo}: {lines[-1][:400] if lines else f'exit {child.returncode}'}")
    return True


def fetch(repo: str, expected: int, stall_s: float, every: float | None = None, weights: bool = True) -> dict:
    """Download `repo` into the hub's cache (nothing if it is there); without its `weights` when this
    node only needs the config and tokenizer. Returns the report; raises DownloadFailed with the bytes
    it got when it stalled twice or the hub refused."""
    files = FILES if weights else [f for f in FILES if f != WEIGHTS]
    expected = expected if weights else 0
    memory = memory_gb()
    fast = memory is not None and memory >= FAST_PATH_GB
    env = {**os.environ, **({"HF_XET_HIGH_PERFORMANCE": "1"} if fast else {})}
    every = every or float(os.environ.get("FULLCYCLE_PROGRESS_S", "30"))
    progress = Progress(hf_home(), expected, every, stall_s)
    report = {"repo": repo, "fast_path": fast, "memory_gb": round(memory, 1) if memory else None,
              "stall_s": stall_s, "tries": 0, "weights": weights}
    say(f"downloading {repo} (hub fast path {'on' if fast else 'off'}: {report['memory_gb']} GB of memory)")
    for attempt in range(1, TRIES + 1):
        report["tries"] = attempt
        if _once(repo, progress, env, files):
            break
        say(f"WARNING: the download of {repo} stalled: no byte for {stall_s:.0f}s "
            f"({size(progress.got())} so far); " + ("trying once more" if attempt < TRIES else "giving up"))
    else:
        raise DownloadFailed(f"the download of {repo} stalled {TRIES} times (no byte for {stall_s:.0f}s each time); "
                             f"got {size(progress.got())}" + (f" of ~{size(expected)}" if expected else ""),
                             progress.got())
    seconds = time.monotonic() - progress.started
    progress.sample()
    got = progress.got()
    report.update(ok=True, bytes=got, seconds=round(seconds, 2),
                  mb_s=round(got / seconds / 1e6, 1) if seconds else None)
    say(f"base model downloaded: {size(got)} in {seconds:.1f}s ({report['mb_s']} MB/s)"
        + (" (already cached: nothing downloaded)" if got == 0 else ""))
    return report


def plan(config: dict) -> str | None:
    """The repo to download, None when the model travels with the inputs, is a local folder, or nothing
    is trained after the preflight (`doit gpu_check`). A pre-quantized build the stack cannot load is
    found out by the preflight beside it; the load then fetches the bf16 weights, once."""
    if config["preflight_only"] or config["base_model_dir"]:
        return None
    repo = str(config["model_to_load"] or config["base_model"])
    return None if repo.startswith(("/", ".")) else repo


def wait(poll_s: float = 0.5) -> dict | None:
    """Wait for the download started beside this process (FULLCYCLE_DOWNLOAD_PID, its report at
    FULLCYCLE_DOWNLOAD_REPORT) and return its report; None when none was started. Raises
    DownloadFailed when it failed or died without a report (killed for memory, say)."""
    pid, report = os.environ.get("FULLCYCLE_DOWNLOAD_PID"), os.environ.get("FULLCYCLE_DOWNLOAD_REPORT")
    if not pid or not report:
        return None
    said = time.monotonic()
    while True:
        try:
            found = json.loads(Path(report).read_text())
            break
        except (OSError, ValueError):
            pass
        if not _alive(int(pid)) and not Path(report).exists():
            raise DownloadFailed("the download process ended without a report (killed, out of memory?)")
        if time.monotonic() - said >= 60:
            say("waiting for the base model's download to finish")
            said = time.monotonic()
        time.sleep(poll_s)
    if found.get("ok") is False:
        raise DownloadFailed(str(found.get("error") or "the download failed"), int(found.get("bytes") or 0))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped by the runner) is no download
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("--no-weights", action="store_true", help="config and tokenizer only (a cluster's other nodes)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _stop)
    started = time.time()
    config = schema.read(args.config)
    if config["hf_endpoint"]:
        os.environ.setdefault("HF_ENDPOINT", str(config["hf_endpoint"]))
    repo = plan(config)
    if repo is None:
        report, code = {"ok": None, "skipped": "nothing to download: the base model travels with the inputs, or "
                        "nothing is trained after the preflight", "bytes": 0}, 0
    else:
        try:
            report, code = fetch(repo, config["download_bytes"], config["download_stall_s"],
                                 weights=not args.no_weights), 0
        except DownloadFailed as exc:
            report, code = {"ok": False, "repo": repo, "error": str(exc), "bytes": exc.got}, DOWNLOAD_FAILED
            if isinstance(exc, Stopped):
                report["stopped"] = True
            print(f"[train] {'download stopped' if isinstance(exc, Stopped) else 'ERROR'}: {exc}",
                  file=sys.stderr, flush=True)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    report.update(started_at=round(started, 3), ended_at=round(time.time(), 3))
    partial = args.report.with_name(args.report.name + ".tmp")
    partial.write_text(json.dumps(report, indent=2))
    partial.replace(args.report)  # whole or not at all: the trainer beside it reads it as its signal
    return code


if __name__ == "__main__":
    sys.exit(main())
