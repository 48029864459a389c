"""One training over several processes (torchrun, one per GPU): which process this is, and the
rule that only rank 0 speaks, evaluates, saves and reports. Under a single process every answer
is the single-process one, so the trainer reads the same either way.

torchrun gives each process RANK, LOCAL_RANK and WORLD_SIZE; transformers' Trainer sets up the
process group and the data sharding from them (NCCL on GPUs, gloo on CPUs).
"""

from __future__ import annotations

import os
from pathlib import Path


def rank() -> int:
    return int(os.environ.get("RANK", "0") or 0)


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0") or 0)


def world() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def is_main() -> bool:
    return rank() == 0


def record_exit(code: int) -> int:
    """torchrun answers 1 for any rank's failure: each rank leaves its own exit code beside the log
    (rank<N>.exit) so the runner can report the trainer's (2 bad input, 3 no model...)."""
    if world() > 1:
        Path(f"rank{rank()}.exit").write_text(f"{code}\n")
    return code


def small_shm_fallback(shm: str = "/dev/shm", min_mb: int = 1024) -> str | None:
    """NCCL moves data between the GPUs of one machine through /dev/shm; a container started with
    Docker's default 64 MB fails there at the first step ("failed to extend /dev/shm/nccl-..."). With
    less than `min_mb` NCCL is told to use its other paths (slower, working); a value the user set
    is kept. Returns what was done, for the log."""
    if world() < 2 or "NCCL_SHM_DISABLE" in os.environ:
        return None
    try:
        stat = os.statvfs(shm)
    except OSError:
        return None
    size_mb = stat.f_blocks * stat.f_frsize // 2**20
    if size_mb >= min_mb:
        return None
    os.environ["NCCL_SHM_DISABLE"] = "1"
    return f"{shm} holds {size_mb} MB (under {min_mb}): NCCL_SHM_DISABLE=1, so NCCL does not fail there"


def gpus_seen() -> int:
    """The GPUs this machine really has (nvidia-smi), 0 where there is none or no driver."""
    import subprocess

    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in listed.splitlines() if line.startswith("GPU "))


def processes(asked: int, seen: int) -> tuple[int, str | None]:
    """How many training processes: one per GPU asked for, never more than the pod has; on a machine
    without GPUs, the count asked (CPU processes over gloo: how the tests run it). With why, when
    that is not what was asked."""
    asked = max(int(asked or 1), 1)
    if seen and seen < asked:
        return seen, f"the pod has {seen} GPU(s) of the {asked} asked for: training on {seen}"
    return asked, None


def main(argv: list[str] | None = None) -> int:
    """`python -m trainer.ranks CONFIG`: print the process count the runner launches torchrun with, and
    how they share the model: "fsdp" (train_fsdp.py, each holding a shard) or "copies" (one copy each)."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    from trainer import schema

    try:
        config = schema.read(Path(args[0]))
        asked, sharded = config["gpu_count"], bool(config["sharding"])
    except (OSError, ValueError, IndexError):
        asked, sharded = 1, False
    count, why = processes(asked, gpus_seen())
    if why:
        print(f"[train] WARNING: {why}", file=sys.stderr, flush=True)
    print(count, "fsdp" if sharded else "copies")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
