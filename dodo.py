"""fullcycle: `doit full_cycle` trains today's LoRA adapter; `doit list` shows the stages.

Settings come from fullcycle.toml (or $FULLCYCLE_CONFIG); the run date from `--date`,
$FULLCYCLE_DATE, the settings, or today. Nothing heavy is imported here.
"""

import atexit
import os
import signal
import sys

from doit import get_var

from tasks import stages
from tasks.context import RunContext
from tasks.settings import SettingsError


def _date_from_argv(argv: list[str]) -> str | None:
    """`--date` is a task option to doit, but the targets depend on it, so read it before doit does."""
    for i, arg in enumerate(argv):
        if arg == "--date" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--date="):
            return arg.split("=", 1)[1]
    return get_var("date")


def _load() -> RunContext:
    try:
        return RunContext.load(os.path.dirname(os.path.abspath(__file__)), _date_from_argv(sys.argv) or None)
    except SettingsError as exc:
        print(f"fullcycle: settings error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _signals_interrupt(signum, _frame):
    """doit runs teardowns (pod termination) on KeyboardInterrupt only: make SIGTERM/SIGHUP one."""
    raise KeyboardInterrupt(f"signal {signum}")


def _exit_code_for_teardown() -> None:
    if stages.TEARDOWN_FAILURES:
        sys.stdout.flush()
        print("fullcycle: the pod could not be terminated: " + "; ".join(stages.TEARDOWN_FAILURES)
              + "\n  terminate it with `doit terminate_pod` or in the RunPod console", file=sys.stderr)
        sys.stderr.flush()
        os._exit(3)


CTX = _load()
CTX.paths.cache_dir.mkdir(parents=True, exist_ok=True)
signal.signal(signal.SIGTERM, _signals_interrupt)
signal.signal(signal.SIGHUP, _signals_interrupt)
atexit.register(_exit_code_for_teardown)

DOIT_CONFIG = {
    "default_tasks": ["full_cycle"],
    "verbosity": 2,
    "backend": "sqlite3",
    "dep_file": str(CTX.paths.doit_db),
    "sort": "definition",
}

_STAGES = stages.tasks(CTX)


def task_check_stale_pods():
    return _STAGES["check_stale_pods"]


def task_build_dataset():
    return _STAGES["build_dataset"]


def task_clean_dataset():
    return _STAGES["clean_dataset"]


def task_write_config():
    return _STAGES["write_config"]


def task_build_tiny_model():
    return _STAGES["build_tiny_model"]


def task_create_pod():
    return _STAGES["create_pod"]


def task_upload():
    return _STAGES["upload"]


def task_train():
    return _STAGES["train"]


def task_download_adapter():
    return _STAGES["download_adapter"]


def task_terminate_pod():
    return _STAGES["terminate_pod"]


def task_extract_adapter():
    return _STAGES["extract_adapter"]


def task_post_gguf():
    return _STAGES["post_gguf"]


def task_post_modelfile():
    return _STAGES["post_modelfile"]


def task_post_latest():
    return _STAGES["post_latest"]


def task_post_commands():
    return _STAGES["post_commands"]


def task_summarize():
    return _STAGES["summarize"]


def task_full_cycle():
    return stages.full_cycle(CTX, list(_STAGES))


def task_reap_pods():
    return stages.reap_pods(CTX)


def task_report():
    return stages.report(CTX)
