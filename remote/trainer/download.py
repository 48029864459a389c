"""The base model's download, a step of its own on the pod (after the preflight, before the trainer):
timed, measured in bytes and MB/s, reported as it goes in whole lines, with the hub's fast path where
the pod has the memory for it, and never hung: a download that receives no byte for
`download_stall_s` is stopped and tried once more, then the run fails with what it got.

    python -m trainer.download --config C --report download.json

Exit 0 (downloaded, already cached, or nothing to download), 6 (the download failed or stalled).
The trainer loads from the hub's cache afterwards: its "model load" is then only the load.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from trainer.config import say

DOWNLOAD_FAILED = 6
FAST_PATH_GB = 32  # hf_xet's high-performance mode uses every core and has OOM-killed a 12 GB node
TRIES = 2  # a stall is retried once: the hub resumes what it had
FILES = ["*.json", "*.safetensors", "*.model", "*.tiktoken", "*.txt", "*.jinja", "*.py"]  # weights, config, tokenizer


class DownloadFailed(Exception):
    def __init__(self, message: str, got: int = 0) -> None:
        super().__init__(message)
        self.got = got  # the bytes that did arrive, for the record


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


def _once(repo: str, progress: Progress, env: dict[str, str]) -> bool:
    """One try in a child process (a hung download can be stopped, a thread cannot): True when it
    finished, False when it stalled and was stopped. Raises DownloadFailed when the hub said no."""
    code = ("import sys; from huggingface_hub import snapshot_download; "
            "snapshot_download(sys.argv[1], allow_patterns=sys.argv[2].split(','))")
    said = Path("download.log")  # the child's own words, for the error; a pipe nobody reads would fill and hang it
    with said.open("w") as out:
        child = subprocess.Popen([sys.executable, "-c", code, repo, ",".join(FILES)], stdout=out,
                                 stderr=subprocess.STDOUT, env={**env, "HF_HUB_DISABLE_PROGRESS_BARS": "1"})
    progress.last_growth = last_said = time.monotonic()  # each try has its own stall clock
    while child.poll() is None:
        time.sleep(min(1.0, progress.stall_s / 4))
        if progress.stalled():
            child.kill()
            child.wait()
            return False
        if time.monotonic() - last_said >= progress.every:
            say(progress.line())
            last_said = time.monotonic()
    if child.returncode != 0:
        lines = said.read_text(errors="replace").strip().splitlines()
        raise DownloadFailed(f"the hub refused {repo}: {lines[-1][:400] if lines else f'exit {child.returncode}'}")
    return True


def fetch(repo: str, expected: int, stall_s: float, every: float | None = None) -> dict:
    """Download `repo` into the hub's cache (nothing if it is there). Returns the report; raises
    DownloadFailed with the bytes it got when it stalled twice or the hub refused."""
    memory = memory_gb()
    fast = memory is not None and memory >= FAST_PATH_GB
    env = {**os.environ, **({"HF_XET_HIGH_PERFORMANCE": "1"} if fast else {})}
    every = every or float(os.environ.get("FULLCYCLE_PROGRESS_S", "30"))
    progress = Progress(hf_home(), expected, every, stall_s)
    report = {"repo": repo, "fast_path": fast, "memory_gb": round(memory, 1) if memory else None,
              "stall_s": stall_s, "tries": 0}
    say(f"downloading {repo} (hub fast path {'on' if fast else 'off'}: {report['memory_gb']} GB of memory)")
    for attempt in range(1, TRIES + 1):
        report["tries"] = attempt
        if _once(repo, progress, env):
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


def plan(config: dict, preflight: dict) -> tuple[str | None, str | None]:
    """(the repo to download, why it was chosen over another) — None when the model travels with the
    inputs or is a local folder. A pre-quantized build the preflight could not load is not downloaded:
    its bf16 weights are, once (they are quantized while loading)."""
    if config.get("base_model_dir") or str(config.get("model_to_load") or config["base_model"]).startswith(("/", ".")):
        return None, None
    repo = config.get("model_to_load") or config["base_model"]
    check = preflight.get("prequantized")
    if config.get("fallback_model") and isinstance(check, str) and check.startswith("failed"):
        return config["fallback_model"], f"the preflight could not load a pre-quantized build ({check})"
    return repo, None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("--preflight", type=Path, default=Path("preflight.json"))
    args = parser.parse_args(argv)
    config = json.loads(args.config.read_text())
    if config.get("hf_endpoint"):
        os.environ.setdefault("HF_ENDPOINT", str(config["hf_endpoint"]))
    try:
        preflight = json.loads(args.preflight.read_text())
    except (OSError, ValueError):
        preflight = {}
    repo, why = plan(config, preflight)
    if repo is None:
        report, code = {"ok": None, "skipped": "the base model travels with the inputs", "bytes": 0}, 0
    else:
        expected = int((config.get("fallback_bytes") if why else config.get("download_bytes")) or 0)
        try:
            report, code = fetch(repo, expected, float(config.get("download_stall_s") or 120)), 0
            report["instead"] = why
        except DownloadFailed as exc:
            report, code = {"ok": False, "repo": repo, "error": str(exc), "bytes": exc.got}, DOWNLOAD_FAILED
            print(f"[train] ERROR: {exc}", file=sys.stderr, flush=True)
    args.report.write_text(json.dumps(report, indent=2))
    return code


if __name__ == "__main__":
    sys.exit(main())
