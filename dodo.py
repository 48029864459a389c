"""fullcycle's stage graph: `doit full_cycle` trains today's LoRA adapter; `doit list` shows the stages.

Each stage is a task with file dependencies and targets (docs/design.md), so an up-to-date stage is
skipped. Settings come from fullcycle.toml (or $FULLCYCLE_CONFIG); the run date from `--date`,
$FULLCYCLE_DATE, the settings, or today. doit's state is kept per date.

Importing this file reads the settings and makes the folder of doit's state file, nothing else:
no heavy import, no signal handler. The stage bodies live in tasks/; each imports what it needs when it runs.
"""

import os
import sys

from doit import get_var
from doit.tools import config_changed

from tasks import catalog, web
from tasks.context import RunContext
from tasks.core.settings import SettingsError
from tasks.model import hubcheck
from tasks.model.tiny import BASE_MODEL, tiny_files
from tasks.pipeline import assemble, commands, uptodate
from tasks.pipeline.actions import Reporter, doit_action, teardown_action


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
        return assemble.context(os.path.dirname(os.path.abspath(__file__)), _date_from_argv(sys.argv) or None)
    except SettingsError as exc:
        print(f"fullcycle: settings error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


# run_remote_training() runs this file with its own context in CTX (tasks/pipeline/contract.py).
CTX = globals().get("CTX") or _load()
P = CTX.paths
P.doit_db.parent.mkdir(parents=True, exist_ok=True)  # the one write: doit opens its state file on load
DATE_PARAM = {"name": "date", "long": "date", "default": "", "help": "run date YYYY-MM-DD (default: today)"}

DOIT_CONFIG = {
    "default_tasks": ["full_cycle"],
    "verbosity": 2,
    "backend": "sqlite3",
    "dep_file": str(P.doit_db),  # one state file per date
    "sort": "definition",
    "reporter": Reporter,
}


def _stage(name, **graph):
    """A stage's dict: its body (named in tasks/catalog.py) runs inside the stage's record (tasks/record/stage.py)."""
    return {"basename": name, "doc": catalog.doc(name), "actions": [doit_action(CTX, name, catalog.body(name))],
            "params": [DATE_PARAM], "verbosity": 2, **graph}


def _uploads():
    """The upload's inputs, every file of them (dataset, config, the trainer and its package, the tiny
    model once built): its file_dep, so a changed trainer file re-runs the upload."""
    from tasks.data import manifest

    return [str(f) for f in manifest.file_deps(CTX.settings, P)] + tiny_files(CTX)


def _sources():
    builder = CTX.settings.dataset
    if builder.builder != "folder":
        return []
    from pathlib import Path

    from tasks.data.builders import source_files

    src = Path(builder.source).expanduser()
    return [str(f) for f in source_files(src if src.is_absolute() else P.project_root / src)]


# The forced cleanup: doit runs teardowns after all tasks, also after a failure or Ctrl-C.
TERMINATE = [teardown_action(CTX, catalog.lazy("tasks.pod.lifecycle:ensure_terminated"))]


def task_check_stale_pods():
    return {"basename": "check_stale_pods", "doc": catalog.doc("check_stale_pods"),
            "actions": [(catalog.body("check_stale_pods"), [CTX])], "params": [DATE_PARAM],
            "verbosity": 2, "uptodate": [uptodate.no_pods_to_watch(CTX)]}


def task_check_model():
    # the check is computed from exactly these: none it reads can be missing here
    return _stage("check_model", targets=[str(P.model_check_file)], uptodate=[config_changed(hubcheck.inputs(CTX.settings))])


def task_build_dataset():
    return _stage("build_dataset", file_dep=_sources(), targets=[str(P.raw_data_file)],
                  uptodate=[config_changed(repr(CTX.settings.dataset))])


def task_clean_dataset():
    return _stage("clean_dataset", file_dep=[str(P.raw_data_file)],
                  targets=[str(P.clean_data_file), str(P.clean_stats_file), str(P.heldout_file)],
                  uptodate=[config_changed(repr((CTX.settings.dataset, CTX.settings.training.max_seq_length,
                                                 CTX.settings.eval.fraction, CTX.settings.eval.min_samples,
                                                 CTX.settings.eval.max_samples)))])


def task_write_config():
    return _stage("write_config", file_dep=[str(P.model_check_file), str(P.heldout_file)], targets=[str(P.config_file)],
                  uptodate=[uptodate.config_current(CTX)])


def task_build_tiny_model():
    return _stage("build_tiny_model", task_dep=["clean_dataset"], targets=tiny_files(CTX),
                  uptodate=[config_changed(repr((CTX.settings.training.is_tiny, BASE_MODEL)))])


def task_create_pod():
    return _stage("create_pod", file_dep=_uploads(), targets=[str(P.pod_file)], uptodate=[uptodate.pod_in_use(CTX)],
                  teardown=TERMINATE)


def task_upload():
    return _stage("upload", file_dep=_uploads(), task_dep=["create_pod"], targets=[str(P.upload_ok)],
                  uptodate=[uptodate.SamePod(CTX)], teardown=TERMINATE)


def task_train():
    return _stage("train", file_dep=[str(P.upload_ok)], targets=[str(P.train_file)], uptodate=[uptodate.SamePod(CTX)],
                  teardown=TERMINATE)


def task_download_adapter():
    return _stage("download_adapter", file_dep=[str(P.train_file)], targets=[str(P.adapter_b64)], uptodate=[uptodate.SamePod(CTX)],
                  teardown=TERMINATE)


def task_terminate_pod():
    # No dependency on purpose: `doit terminate_pod` is the advice when a teardown failed, and it
    # must end the pod and do nothing else. full_cycle orders it right after the download.
    return _stage("terminate_pod", uptodate=[uptodate.pod_terminated(CTX)])


def task_extract_adapter():
    return _stage("extract_adapter", file_dep=[str(P.adapter_b64), str(P.train_file)], targets=[str(P.final_adapter_dir)])


def task_evaluate():
    return _stage("evaluate", file_dep=[str(P.final_adapter_dir / "adapter_model.safetensors")], task_dep=["extract_adapter"],
                  targets=[str(P.eval_file)], uptodate=[config_changed(repr(CTX.settings.eval))])


def task_post_gguf():
    adapter = P.final_adapter_dir
    return _stage("post_gguf", file_dep=[str(adapter / n) for n in ("adapter_config.json", "adapter_model.safetensors",
                                                        "base_model_config.json")],
                  task_dep=["extract_adapter"], targets=[str(P.out_root / "adapter.gguf")])


def task_post_modelfile():
    # adapter.gguf is no file_dep: a family llama.cpp cannot hold has none, and that is a warning
    return _stage("post_modelfile", task_dep=["post_gguf"], targets=[str(P.out_root / "Modelfile")],
                  uptodate=[config_changed(repr(CTX.settings.post)), uptodate.modelfile_current(CTX)])


def task_post_latest():
    return _stage("post_latest", task_dep=["evaluate"], uptodate=[uptodate.latest_is_current(CTX)])


def task_post_commands():
    return _stage("post_commands", task_dep=["post_gguf"], file_dep=[str(P.final_adapter_dir / "adapter_model.safetensors")],
                  uptodate=[config_changed(repr(CTX.settings.post.commands))])


def task_summarize():
    return {"basename": "summarize", "doc": catalog.doc("summarize"),
            "actions": [(catalog.body("summarize"), [CTX])], "params": [DATE_PARAM], "verbosity": 2,
            "task_dep": ["terminate_pod"], "targets": [str(P.summary_file)],
            "uptodate": [uptodate.summary_current(CTX)]}


def task_full_cycle():
    return {"basename": "full_cycle", "doc": "Run every stage in order: dataset → pod → train → adapter → summary",
            "task_dep": list(catalog.FULL_CYCLE),
            "actions": [(commands.full_cycle_result, [CTX])], "params": [DATE_PARAM], "verbosity": 2, "uptodate": [False]}


def task_reap_pods():
    return {"basename": "reap_pods", "doc": "Terminate this project's pods that no live run owns or that outlived max_runtime_h",
            "actions": [(commands.reap, [CTX, True])], "params": [DATE_PARAM], "verbosity": 2, "uptodate": [False]}


def task_gpu_check():
    return {"basename": "gpu_check", "doc": "Rent the cheapest available GPU, run only the preflight on the configured "
                                           "stack, terminate: run once before the first real day",
            "actions": [(commands.gpu_check, [CTX])], "params": [DATE_PARAM], "verbosity": 2, "uptodate": [False]}


def task_volume():
    return {"basename": "volume", "doc": "Plan a network volume that keeps the model and the stack between runs "
                                        "(size, place, $/month against the download, stack build and compile it "
                                        "saves); --create makes it",
            "actions": [(commands.volume, [CTX])], "verbosity": 2, "uptodate": [False],
            "params": [DATE_PARAM, {"name": "create", "long": "create", "type": bool, "default": False,
                                    "help": "create the volume (billed monthly until deleted)"}]}


def task_schedule():
    return {"basename": "schedule", "doc": "Run full_cycle every day: --at HH:MM installs a user timer (or a crontab "
                                          "line), --off removes it; alone it says what is installed and when it runs "
                                          "next",
            "actions": [(commands.schedule, [CTX, os.path.abspath(__file__)])], "verbosity": 2, "uptodate": [False],
            "params": [DATE_PARAM,
                       {"name": "at", "long": "at", "default": "", "help": "the time of day, HH:MM (24-hour)"},
                       {"name": "off", "long": "off", "type": bool, "default": False, "help": "remove the schedule"},
                       {"name": "crontab", "long": "crontab", "type": bool, "default": False,
                        "help": "add the crontab line (where systemd does not run your session)"}]}


def task_plan():
    return {"basename": "plan", "doc": "Print where a base model would train (one GPU, N GPUs sharded on a pod, a cluster): "
                                      "GPUs, pods, GB per GPU, $/h; no network",
            "actions": [(commands.plan, [CTX])], "verbosity": 2, "uptodate": [False],
            "params": [DATE_PARAM, {"name": "model", "long": "model", "default": "",
                                    "help": "a model id (default: [training] base_model)"}]}


def task_report():
    return {"basename": "report", "doc": "Print the run history (attempts, loss, minutes, cost) and draw loss.png per run",
            "actions": [(commands.report, [CTX])], "params": [DATE_PARAM], "verbosity": 2, "uptodate": [False]}


def task_serve():
    return {"basename": "serve", "doc": "Open the local web page: Run Full Cycle Now, live stages and log, history, pods",
            "actions": [(web.serve, [CTX, os.path.abspath(__file__)])], "verbosity": 2, "uptodate": [False],
            "params": [DATE_PARAM,
                       {"name": "host", "long": "host", "default": "127.0.0.1",
                        "help": "address to bind (anything but loopback asks the page for an access token)"},
                       {"name": "port", "long": "port", "type": int, "default": 8765, "help": "port to bind"}]}
