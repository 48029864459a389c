"""The stages of `doit full_cycle`, in order, each with its help and its body: the one list every
reader uses.

dodo.py takes each task's doc and body from here, the record knows which stages an adapter needs,
the web page shows the same rows with the same words, and run_remote_training() runs the remote
part. A body is named as "module:function" and imported only when the stage runs, so `doit list`
stays light; tests/test_catalog.py imports every one, so a module that moves breaks a test, not a run.
A leaf module: it imports nothing of tasks, so anything may read it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Stage:
    name: str
    doc: str  # `doit list`'s line
    help: str = ""  # the page's plain words for someone who never read the README
    body: str = ""  # "module:function" that runs it, given the RunContext
    recorded: bool = True  # has an outcome of its own in the attempts log (and a row on the page)
    needed: bool = False  # must have succeeded for the date to have a verified adapter
    remote: bool = False  # part of run_remote_training() (seed §3): the caller prepared the rest


STAGES: tuple[Stage, ...] = (
    Stage("check_stale_pods", "Before a run: report (or end, per [runpod] reap) pods a crashed run left",
          body="tasks.pipeline.commands:check_stale_pods", recorded=False),
    Stage("check_model", "Ask the model hub whether the base model exists and fits the GPUs; refuse before renting",
          "is the base model there, and does it fit the GPU?", body="tasks.model.hubcheck:check_model"),
    Stage("build_dataset", "Build today's raw JSONL with the configured builder", "gather today's data",
          body="tasks.data.prepare:build_dataset", needed=True),
    Stage("clean_dataset", "Stream-clean the raw JSONL to {instruction,input,output}, deduped, reasons counted",
          "drop broken and duplicate lines", body="tasks.data.prepare:clean_dataset", needed=True),
    Stage("write_config", "Write and validate the training config.json", "the training settings",
          body="tasks.data.trainconfig:write_config", needed=True),
    Stage("build_tiny_model", "Build the tiny local base model (only when base_model = 'tiny'); cached",
          "only for the built-in tiny model", body="tasks.model.tiny:build_tiny_model"),
    Stage("create_pod", "Rent a pod (or resume the live one this date has) and wait until it answers",
          "rent the GPU machine", body="tasks.pod.lifecycle:create_pod", needed=True, remote=True),
    Stage("upload", "Upload dataset, config and trainer; verify sha256 on the pod (never under a running trainer)",
          "send data and config, verified", body="tasks.pod.upload:upload_inputs", needed=True, remote=True),
    Stage("train", "Train on the pod (detached, log followed live, re-attaches after drops and crashes)",
          "LoRA training on the pod", body="tasks.pod.follow:follow_training", needed=True, remote=True),
    Stage("download_adapter", "Stream the packed adapter into adapter_base64.txt (resumable)",
          "bring the adapter home", body="tasks.pod.download:download_adapter", needed=True, remote=True),
    Stage("terminate_pod", "Terminate the pod and verify it is gone (idempotent), right after the download",
          "end the pod: billing stops", body="tasks.pod.lifecycle:terminate_pod", needed=True, remote=True),
    Stage("extract_adapter", "Verify and safely unpack the adapter into out/adapters/<DATE>/adapter/",
          "verify and unpack the adapter", body="tasks.pod.extract:extract_adapter", needed=True, remote=True),
    Stage("evaluate", "Judge today's held-out loss against the previous promoted adapter (promoted or not)",
          "is today's adapter better than the last one?", body="tasks.post.verdict:evaluate"),
    Stage("post_gguf", "Convert the adapter to a GGUF LoRA (adapter.gguf) and validate it",
          "adapter for llama.cpp / Ollama", body="tasks.post.gguf_lora:make_gguf"),
    Stage("post_modelfile", "Write the Ollama Modelfile (and `ollama create` when ollama is installed)",
          "Ollama Modelfile", body="tasks.post.ollama:make_modelfile"),
    Stage("post_latest", "Point out/adapters/latest at the newest promoted date (a worse adapter is kept, not promoted)",
          "point 'latest' at this date", body="tasks.post.latest:update_latest"),
    Stage("post_commands", "Run the user's [post] commands in order", "your own post-steps",
          body="tasks.post.user_commands:run_user_commands"),
    Stage("summarize", "Write the final run-summary.json (every attempt, totals, the truth)",
          body="tasks.record.summary:summarize", recorded=False, remote=True),
)

BY_NAME = {s.name: s for s in STAGES}
FULL_CYCLE = tuple(s.name for s in STAGES)  # `doit full_cycle`'s order
SHOWN = tuple(s.name for s in STAGES if s.recorded)  # the page's rows
NEEDED = tuple(s.name for s in STAGES if s.needed)  # an adapter is verified only when these are ok
REMOTE = [s.name for s in STAGES if s.remote]  # run_remote_training()'s stages, in order


def doc(name: str) -> str:
    return BY_NAME[name].doc


def resolve(ref: str) -> Callable[..., Any]:
    """The function a "module:function" reference names, imported now."""
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def lazy(ref: str) -> Callable[..., Any]:
    """A function that imports what `ref` names only when it is called (so `doit list` stays light)."""

    def call(*args: Any) -> Any:  # positional only: doit passes keywords (its params) to whoever takes them
        return resolve(ref)(*args)

    call.__name__ = ref.partition(":")[2]
    call.ref = ref  # type: ignore[attr-defined]
    return call


def body(name: str) -> Callable[..., Any]:
    """Stage `name`'s body, imported when it runs."""
    return lazy(BY_NAME[name].body)
