"""Settings: fullcycle.toml, environment overrides and validation.

Everything is checked when the settings load, long before anything is rented: a typo costs a second,
not a GPU hour. Errors name the file, the field and what to do. Secrets never live here: they come
from the environment, or a file only their owner can read (tasks/core/secrets.py).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import os
import re
import string
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.core import dates, secrets
from tasks.core.errors import FullcycleError
from tasks.core.trainer import DEFAULTS as TRAINER

CONFIG_ENV = "FULLCYCLE_CONFIG"
DATE_ENV = "FULLCYCLE_DATE"
ROOT_ENV = "FULLCYCLE_PROJECT_ROOT"
PROVIDER_ENV = "FULLCYCLE_PROVIDER"
API_KEY_ENV, NOTIFY_URL_ENV = secrets.API_KEY_ENV, secrets.NOTIFY_URL_ENV
TINY = "tiny"  # [training] base_model that means "build the tiny model here" (tasks/model/tiny.py)


class SettingsError(FullcycleError, ValueError):
    """A setting is missing, misspelt or out of range; the message says where and what to do."""


def _rule(minimum: float | None = None, maximum: float | None = None, choices: tuple = (), doc: str = "",
          pattern: str = "") -> dict:
    return {"min": minimum, "max": maximum, "choices": choices, "doc": doc, "pattern": pattern}


@dataclass(frozen=True)
class ProjectSettings:
    root: str = field(default=".", metadata=_rule(doc="project root, relative to the settings file"))
    date: str = field(default="", metadata=_rule(doc="run date YYYY-MM-DD; empty means today"))
    provider: str = field(default="local", metadata=_rule(choices=("local", "runpod")))
    # NAME=value secrets read when a run starts (mode 600, checked): for a run nobody starts by hand
    secrets_file: str = secrets.DEFAULT_FILE


@dataclass(frozen=True)
class PathSettings:
    out_root: str = "out/adapters/{date}"
    work_local: str = "metahuman-runs/{date}"
    raw_data_file: str = "{out_root}/{date}.jsonl"
    final_adapter_dir: str = "{out_root}/adapter"
    trainer_log: str = "docs/run_logs/{date}/trainer.log"
    cache_dir: str = ".fullcycle"


@dataclass(frozen=True)
class DatasetSettings:
    builder: str = field(default="folder", metadata=_rule(choices=("folder", "command", "python")))
    source: str = "examples/notes"
    command: str = ""
    callable: str = ""
    too_long: str = field(default="drop", metadata=_rule(choices=("drop", "cut")))  # samples over max_seq_length
    max_drop_fraction: float = field(default=0.2, metadata=_rule(0.0, 1.0))  # warn above this share dropped
    drop_fatal: bool = False  # true: above max_drop_fraction, stop before anything is rented


@dataclass(frozen=True)
class TrainingSettings:
    base_model: str = "Qwen/Qwen3-30B-A3B"
    lora_rank: int = field(default=8, metadata=_rule(1, 1024))
    lora_alpha: int = field(default=TRAINER.lora_alpha, metadata=_rule(1, 4096))  # defaults: the trainer's own
    lora_dropout: float = field(default=TRAINER.lora_dropout, metadata=_rule(0.0, 0.9))
    num_train_epochs: float = field(default=2, metadata=_rule(0.01, 100))
    learning_rate: float = field(default=0.0002, metadata=_rule(1e-8, 1.0))
    per_device_train_batch_size: int = field(default=1, metadata=_rule(1, 4096))
    gradient_accumulation_steps: int = field(default=16, metadata=_rule(1, 4096))
    max_seq_length: int = field(default=2048, metadata=_rule(16, 1_048_576))
    seed: int = field(default=TRAINER.seed, metadata=_rule(0, 2**31 - 1))
    max_steps: int = field(default=TRAINER.max_steps, metadata=_rule(-1, 10_000_000))  # -1: num_train_epochs
    quantize: str = field(default="auto", metadata=_rule(choices=("auto", "never", "always")))  # 4-bit build
    # "latest": today's LoRA starts from the last promoted adapter's weights (same base model and rank)
    start_from: str = field(default="base", metadata=_rule(choices=("base", "latest")))
    # the modules the LoRA trains, by name (e.g. ["q_proj", "v_proj"]); empty: by architecture (all linear
    # layers; the attention projections on a mixture-of-experts model, which convert to a GGUF LoRA)
    target_modules: tuple[str, ...] = field(default=(), metadata=_rule(pattern=r"[A-Za-z_][\w.]*"))
    use_rslora: bool = TRAINER.use_rslora  # rank-stabilised LoRA (alpha / sqrt(r)); its adapter has no GGUF form
    # a mixture-of-experts base loaded in 4-bit: "auto" downloads the build the pinned stack can load (the
    # bf16 weights on transformers 5, quantized while loading, ~61 GB for Qwen3-30B-A3B); "prequantized" the
    # published 4-bit build (~17 GB) anyway, its bf16 weights once if it will not load; "bf16" never tries it
    moe_build: str = field(default="auto", metadata=_rule(choices=("auto", "bf16", "prequantized")))
    # "auto": bf16 weights sharded (FSDP2) when neither they nor a 4-bit build fit one GPU; "fsdp": always
    sharding: str = field(default="auto", metadata=_rule(choices=("auto", "never", "fsdp")))

    @property
    def is_tiny(self) -> bool:  # the built-in tiny model: built here, uploaded with the inputs
        return self.base_model == TINY

    @property
    def is_local(self) -> bool:  # a base model on this machine (tiny, or a folder): nothing to ask the hub
        return self.is_tiny or self.base_model.startswith(("/", "./", "~"))


@dataclass(frozen=True)
class EvalSettings:
    fraction: float = field(default=0.05, metadata=_rule(0.0, 0.5))  # share held out, chosen by content hash
    min_samples: int = field(default=8, metadata=_rule(1, 1_000_000))  # fewer held out: no evaluation
    max_samples: int = field(default=200, metadata=_rule(1, 1_000_000))  # more: the rest train
    tolerance: float = field(default=0.02, metadata=_rule(0.0, 100.0))  # held-out loss "not worse" margin
    promote: str = field(default="if_not_worse", metadata=_rule(choices=("if_not_worse", "always")))
    prompts: str = ""  # a file of prompts (one per line) to answer side by side; empty: held-out instructions
    answers: int = field(default=3, metadata=_rule(0, 50))  # how many prompts are answered
    max_new_tokens: int = field(default=48, metadata=_rule(1, 4096))


@dataclass(frozen=True)
class RunpodSettings:
    api: str = field(default="rest", metadata=_rule(choices=("rest", "graphql")))  # GraphQL retires in early 2027
    gpu_choice: str = field(default="order", metadata=_rule(choices=("order", "cheapest")))  # among those available
    gpu_types: tuple[str, ...] = ("NVIDIA GeForce RTX 5090", "NVIDIA GeForce RTX 4090", "NVIDIA RTX A6000")
    cloud_types: tuple[str, ...] = ("COMMUNITY", "SECURE")
    template_id: str = "pzr9tt3vvq"
    image_name: str = ""
    gpu_count: int = field(default=1, metadata=_rule(1, 8))
    max_gpus: int = field(default=8, metadata=_rule(1, 2000))  # the most GPUs a sharded plan may rent, every pod's together
    min_vcpu_count: int = field(default=15, metadata=_rule(1, 512))
    min_memory_gb: int = field(default=46, metadata=_rule(1, 4096))
    volume_gb: int = field(default=306, metadata=_rule(0, 100_000))
    container_disk_gb: int = field(default=50, metadata=_rule(1, 100_000))
    name_prefix: str = "fullcycle"
    ready_timeout_s: float = field(default=900, metadata=_rule(1, 86_400))
    poll_interval_s: float = field(default=5, metadata=_rule(0.05, 600))
    retry_base_s: float = field(default=1.0, metadata=_rule(0.0, 60))
    # RunPod not answering about a pod is asked again this long, then the stage fails (never read as "gone")
    unknown_timeout_s: float = field(default=300, metadata=_rule(0, 86_400))
    max_runtime_h: float = field(default=6, metadata=_rule(0.0001, 168))
    reap: str = field(default="report", metadata=_rule(choices=("off", "report", "terminate")))
    ssh_key_path: str = "~/.ssh/id_ed25519"
    gateway_host: str = "ssh.runpod.io"
    gateway_port: int = field(default=22, metadata=_rule(1, 65535))
    network_volume_id: str = ""  # a network volume for /workspace: the venv and HF_HOME persist across runs
    download_stall_s: float = field(default=120, metadata=_rule(5, 3600))  # no byte for this long: retried once, then failed
    min_cuda_version: str = field(default="12.8", metadata=_rule(choices=("", "12.4", "12.6", "12.8", "12.9", "13.0",
                                                                          "13.1", "13.2")))  # the image's torch needs 12.8
    billing_wait_s: float = field(default=10, metadata=_rule(0, 600))  # between asks of what RunPod billed: it lags


@dataclass(frozen=True)
class RemoteSettings:
    input_dir: str = "/workspace/input"
    output_dir: str = "/output/adapter"
    work_dir: str = "/workspace/fullcycle"
    python: str = "/workspace/unsloth-venv/bin/python"  # used when it exists and has the stack
    # else the image's: the official unsloth image's venv first (on PATH only for login shells)
    python_candidates: tuple[str, ...] = ("/opt/unsloth-venv/bin/python", "python3", "python", "/opt/conda/bin/python")
    venv_dir: str = "/workspace/fullcycle-venv"  # else built here, on the volume, and reused
    hf_home: str = "/workspace/hf-cache"
    # PyTorch's CUDA 12.8 wheel index (…/whl/cu128): torch, torchvision and xformers are all taken from it
    # when the pod's stack is built, so the three match; empty: only an image's stack in range is used
    torch_index: str = ""
    trainer: str = ""  # a trainer script of your own (train_unsloth.py's arguments and outputs); empty: that one
    # the real run's code path on a tiny model of the base model's family, on the pod, beside the download:
    # "auto" where the base model is downloaded there, "always", "never"
    preflight: str = field(default="auto", metadata=_rule(choices=("auto", "always", "never")))


@dataclass(frozen=True)
class SshSettings:
    probe_timeout_s: float = field(default=300, metadata=_rule(1, 86_400))
    reconnect_delay_s: float = field(default=5, metadata=_rule(0, 600))
    # RunPod lists a pod's direct port before its sshd listens: direct is waited for this long after
    # the API published it before the gateway is tried
    direct_grace_s: float = field(default=90, metadata=_rule(0, 3600))


@dataclass(frozen=True)
class PostSettings:
    ollama_from: str = ""  # FROM line of the Modelfile; empty = [training] base_model
    ollama_create: bool = True  # run `ollama create` when an ollama binary is on PATH
    ollama_model_name: str = "fullcycle-{date}"
    base_gguf: str = ""  # a GGUF of the base model: lets a refused ADAPTER fall back to a merged model
    commands: tuple[str, ...] = ()  # run in order after success; {date} {adapter_dir} {gguf} {summary}


@dataclass(frozen=True)
class NotifySettings:
    """A word on every run that ends (tasks/pipeline/notify.py); neither can change the run's outcome."""

    command: str = ""  # run with FULLCYCLE_OUTCOME, _DATE, _SUMMARY and _REASON in its environment
    url: str = ""  # receives a short JSON POST (ntfy, a chat webhook); empty: $FULLCYCLE_NOTIFY_URL, if set
    timeout_s: float = field(default=10, metadata=_rule(0.5, 300))


SECTIONS: dict[str, type] = {
    "project": ProjectSettings,
    "paths": PathSettings,
    "dataset": DatasetSettings,
    "training": TrainingSettings,
    "eval": EvalSettings,
    "runpod": RunpodSettings,
    "remote": RemoteSettings,
    "ssh": SshSettings,
    "post": PostSettings,
    "notify": NotifySettings,
}


@dataclass(frozen=True)
class Settings:
    project: ProjectSettings
    paths: PathSettings
    dataset: DatasetSettings
    training: TrainingSettings
    eval: EvalSettings
    runpod: RunpodSettings
    remote: RemoteSettings
    ssh: SshSettings
    post: PostSettings
    notify: NotifySettings
    source_file: Path | None
    project_root: Path
    date: str

    @property
    def api_key(self) -> str | None:
        """Read on use, never stored, so it cannot end up in a dump of the settings: the environment,
        else the secrets file (refused, with the fix, when others may read it)."""
        if not os.environ.get(API_KEY_ENV):
            secrets.fill_environment(self.project.secrets_file)
        return os.environ.get(API_KEY_ENV) or None


# Settings that are gone, and what took their place: a file that still has one is told, not ignored.
_GONE = "delete the line"
REMOVED: dict[tuple[str, str], str] = {
    ("runpod", "watchdog_command"): f"the pod's watchdog ends the pod with its own key, REST first; {_GONE}",
    ("training", "tiny_architecture"): f"the tiny model is always the default base model's family; {_GONE}",
    ("runpod", "download_mb_s"): f"downloads are estimated at 100 MB/s and measured on the pod; {_GONE}",
    ("runpod", "data_center_id"): f"a network volume's data center is asked of RunPod; {_GONE}",
    ("runpod", "support_public_ip"): f"a public IP is always asked for (direct ssh); {_GONE}",
    ("runpod", "direct_users"): f"the API's user, else root, then unsloth, are tried; {_GONE}",
    ("runpod", "billing_attempts"): f"what RunPod billed is asked 3 times; {_GONE}",
    **{("ssh", k): f"ssh's timeouts are fixed (15 s to connect, keep-alives every 15 s); {_GONE}"
       for k in ("connect_timeout_s", "server_alive_interval_s", "server_alive_count_max")},
    ("ssh", "train_timeout_h"): f"a training is followed until [runpod] max_runtime_h ends the pod; {_GONE}",
    **{("post", k): f"llama.cpp's tools are found on PATH by their own names; {_GONE}"
       for k in ("llama_export_lora", "llama_server")},
}


def _suggest(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(sorted(known))})"


def _coerce(where: str, f: dataclasses.Field, value: Any) -> Any:
    """Check one value's type; TOML gives us typed values, the environment gives strings."""
    want, shown = f.type, value
    if want in ("int",):
        if isinstance(value, bool) or not isinstance(value, int):
            raise SettingsError(f"{where}: expected an integer, got {value!r}")
    elif want in ("float",):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SettingsError(f"{where}: expected a number, got {value!r}")
        value = float(value)
    elif want in ("str",):
        if not isinstance(value, str):
            raise SettingsError(f"{where}: expected a string, got {value!r}")
    elif want == "bool":
        if not isinstance(value, bool):
            raise SettingsError(f"{where}: expected true or false, got {value!r}")
    elif want.startswith("tuple"):
        empty_ok = f.default == ()
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value) or not (value or empty_ok):
            raise SettingsError(f"{where}: expected a {'' if empty_ok else 'non-empty '}list of strings, got {value!r}")
        value = tuple(value)
    rule = f.metadata
    if rule.get("pattern"):
        for item in value if isinstance(value, tuple) else (value,):
            if not re.fullmatch(rule["pattern"], item):
                raise SettingsError(f"{where}: {item!r} is not a name of that kind (letters, digits, '_' and '.')")
    if rule.get("choices") and value not in rule["choices"]:
        raise SettingsError(f"{where}: {shown!r} is not one of {', '.join(rule['choices'])}")
    if rule.get("min") is not None and value < rule["min"]:
        raise SettingsError(f"{where}: {shown!r} is below the minimum {rule['min']}")
    if rule.get("max") is not None and value > rule["max"]:
        raise SettingsError(f"{where}: {shown!r} is above the maximum {rule['max']}")
    return value


def _section(source: str, name: str, raw: Any) -> Any:
    cls = SECTIONS[name]
    if not isinstance(raw, dict):
        raise SettingsError(f"{source}: [{name}] must be a table")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in raw.items():
        if (name, key) in REMOVED:
            raise SettingsError(f"{source}: [{name}] {key} is no longer a setting: {REMOVED[(name, key)]}")
        if key not in fields:
            raise SettingsError(f"{source}: unknown setting [{name}] {key}{_suggest(key, list(fields))}")
        values[key] = _coerce(f"{source}: [{name}] {key}", fields[key], value)
    return cls(**values)


def _check_model(source: str, model: str) -> None:
    """The id's form only; whether it exists is asked of the model hub before renting (modelcheck)."""
    if model == TINY or model.startswith(("/", "./", "~")):
        return
    if not re.fullmatch(r"[\w.\-]+/[\w.\-]+", model):
        raise SettingsError(
            f"{source}: [training] base_model {model!r} is neither 'tiny', a local path, nor an 'org/name' model id"
        )


PATH_NAMES = {"out_root": {"date"}, "cache_dir": set()}  # the names each [paths] template may use
PER_DATE = ("out_root", "work_local", "raw_data_file", "final_adapter_dir", "trainer_log")


def _check_paths(source: str, paths: PathSettings) -> None:
    """Each template names only what it may, and every per-date one names the date (directly or
    through {out_root}): two dates must never share a run folder or an adapter."""
    for f in dataclasses.fields(PathSettings):
        template, allowed = getattr(paths, f.name), PATH_NAMES.get(f.name, {"date", "out_root"})
        try:
            names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
        except ValueError as exc:
            raise SettingsError(f"{source}: [paths] {f.name} {template!r} is not a valid template ({exc})") from None
        unknown = names - allowed
        if unknown:
            raise SettingsError(f"{source}: [paths] {f.name} {template!r} names {{{sorted(unknown)[0]}}}; it may use "
                                + (", ".join(f"{{{n}}}" for n in sorted(allowed)) or "no {name} (it is shared by every date)"))
        if f.name in PER_DATE and not names & {"date", "out_root"}:
            raise SettingsError(f"{source}: [paths] {f.name} {template!r} must contain {{date}}"
                                + (" or {out_root}" if f.name != "out_root" else "") + ": every date has its own")


def _check_date(where: str, date: str) -> str:
    try:
        return dates.parse(date)
    except dates.BadDate as exc:
        raise SettingsError(f"{where}: {exc}") from None


def find_settings_file(default_dir: Path) -> Path | None:
    configured = os.environ.get(CONFIG_ENV)
    if configured:
        path = Path(configured).expanduser()
        if not path.is_file():
            raise SettingsError(f"{CONFIG_ENV}={configured}: no such settings file")
        return path.resolve()
    path = default_dir / "fullcycle.toml"
    return path.resolve() if path.is_file() else None


def load(default_dir: Path | str = ".", date: str | None = None) -> Settings:
    """Load and validate the settings; `date` (e.g. from `--date`) beats the environment and the file."""
    path = find_settings_file(Path(default_dir))
    source = str(path) if path else "built-in defaults"
    raw: dict[str, Any] = {}
    if path:
        try:
            with path.open("rb") as fh:
                raw = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"{source}: not valid TOML: {exc}") from None
    for name in raw:
        if name not in SECTIONS:
            raise SettingsError(f"{source}: unknown section [{name}]{_suggest(name, list(SECTIONS))}")
    sections = {name: _section(source, name, raw.get(name, {})) for name in SECTIONS}

    project: ProjectSettings = sections["project"]
    provider = os.environ.get(PROVIDER_ENV) or project.provider
    provider_field = next(f for f in dataclasses.fields(ProjectSettings) if f.name == "provider")
    _coerce(PROVIDER_ENV, provider_field, provider)
    sections["project"] = dataclasses.replace(project, provider=provider)
    _check_model(source, sections["training"].base_model)
    _check_paths(source, sections["paths"])

    base = path.parent if path else Path(default_dir).resolve()
    root = Path(os.environ.get(ROOT_ENV) or project.root).expanduser()
    root = (base / root).resolve() if not root.is_absolute() else root

    if date:
        run_date = _check_date("--date", date)
    elif os.environ.get(DATE_ENV):
        run_date = _check_date(DATE_ENV, os.environ[DATE_ENV])
    elif project.date:
        run_date = _check_date(f"{source}: [project] date", project.date)
    else:
        run_date = dt.date.today().isoformat()

    return Settings(**sections, source_file=path, project_root=root, date=run_date)
