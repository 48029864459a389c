"""Refuse before renting: does the base model exist, may we download it, and will it fit the GPU?

The model hub's API answers the first two (`HF_ENDPOINT` points elsewhere, e.g. a mirror or the
tests' double); its parameter count answers the third, against the memory of each GPU type in the
fallback list. A bf16 load that fits no candidate GPU is switched to the model's 4-bit build when
`[training] quantize = "auto"`, else refused with the cheaper choices named. Offline, the check
warns and lets the run go on: the pod will say soon enough.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.context import RunContext
from tasks.core.errors import FullcycleError
from tasks.core.secrets import HF_TOKEN_ENV
from tasks.core.settings import TINY, Settings
from tasks.model import plan

log = logging.getLogger("fullcycle")

DEFAULT_ENDPOINT = "https://huggingface.co"

# GPU memory in GB by RunPod gpuTypeId (tasks/model/plan.py keeps them). A type not listed is not judged.
GPU_MEMORY_GB = {gpu: memory for gpu, (memory, _) in plan.GPUS.items()}
# Unsloth's pre-quantized builds, where the name does not follow `unsloth/<name>-bnb-4bit`.
FOUR_BIT_BUILDS = {"Qwen/Qwen3-30B-A3B": "unsloth/Qwen3-30B-A3B-bnb-4bit"}
BYTES_PER_PARAM = {"bf16": 2.0, "4bit": 0.55}  # 4-bit weights plus the layers bitsandbytes keeps in 16 bits
OVERHEAD = 1.2  # activations, LoRA weights and their optimizer state, CUDA context
OVERHEAD_GB = 2.0


class ModelCheckError(FullcycleError):
    """The base model cannot be used as configured; nothing was rented."""


@dataclass
class HubAnswer:
    exists: bool | None  # None: the hub could not be asked
    gated: bool = False
    private: bool = False
    parameters: int | None = None
    storage: int | None = None  # bytes the repository holds (what downloading it costs)
    detail: str = ""


def four_bit_build(model: str) -> str:
    return FOUR_BIT_BUILDS.get(model) or f"unsloth/{model.split('/')[-1]}-bnb-4bit"


def _hub(endpoint: str | None) -> str:
    return (endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def ask_hub(model: str, endpoint: str | None = None, timeout: float = 10.0) -> HubAnswer:
    """What the model hub says of `model` (huggingface_hub's HfApi, HF_TOKEN for a gated one): whether it
    exists, may be downloaded, and how large it is; `exists` None when the hub could not be asked."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    try:
        info = HfApi(endpoint=_hub(endpoint)).model_info(model, timeout=timeout)
    except HfHubHTTPError as exc:  # by its status: a private or gated repo answers 401/403 to whoever may not see it
        status = getattr(exc.response, "status_code", None)
        if status == 404:
            return HubAnswer(False, detail="HTTP 404")
        return HubAnswer(True if status in (401, 403) else None, private=status in (401, 403), detail=f"HTTP {status}")
    except (KeyError, TypeError, ValueError) as exc:
        return HubAnswer(None, detail=f"an answer from {_hub(endpoint)} it could not read ({type(exc).__name__})")
    except Exception as exc:  # noqa: BLE001 - no connection, a timeout (the hub library's own transport errors)
        return HubAnswer(None, detail=f"{type(exc).__name__} from {_hub(endpoint)}")
    total = info.safetensors.total if info.safetensors else None
    return HubAnswer(True, gated=bool(info.gated), parameters=int(total) if total else None,
                     storage=int(info.used_storage) if info.used_storage else None)


def hub_config(model: str, endpoint: str | None = None, timeout: float = 10.0) -> dict[str, Any] | None:
    """The model's config.json from the hub (its architecture), or None when it cannot be had."""
    from huggingface_hub import hf_hub_download

    try:
        path = hf_hub_download(model, "config.json", endpoint=_hub(endpoint), etag_timeout=timeout)
        data = json.loads(Path(path).read_text())
    except Exception:  # noqa: BLE001 - no config is "unknown architecture", never a failed check
        return None
    return data if isinstance(data, dict) else None


def gguf_note(config: dict[str, Any] | None) -> dict[str, Any]:
    """What the base model's architecture means for the local post-steps, known before renting."""
    from tasks.model.families import gguf_unsupported

    if not config:
        return {}
    why = gguf_unsupported(config)
    note = {"architecture": (config.get("architectures") or [None])[0], "model_type": config.get("model_type")}
    if why:
        log.warning("%s: adapter.gguf will be skipped after training (%s); the adapter itself still comes home",
                    note["architecture"], why)
        note["gguf"] = f"adapter.gguf will be skipped: {why}"
    return note


def needed_gb(parameters: int, precision: str) -> float:
    return parameters * BYTES_PER_PARAM[precision] * OVERHEAD / 1e9 + OVERHEAD_GB


CACHE_ENV = "FULLCYCLE_MODEL_CHECKS"
DOWNLOAD_MB_S = 100  # the link speed a download estimate assumes (pods' links vary: it is stated)
LARGE_DOWNLOAD_GB = 20  # above this, renting without a network volume downloads it again every run


def cache_file(model: str) -> Path:
    """The last answer the hub gave about `model` (an offline check uses it instead of guessing)."""
    base = Path(os.environ.get(CACHE_ENV) or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
                / "fullcycle" / "model-checks")
    return base / (model.replace("/", "--") + ".json")


def is_moe(config: dict[str, Any] | None) -> bool:
    config = config or {}
    return bool(config.get("num_experts") or config.get("num_local_experts")
                or "moe" in str(config.get("model_type", "")).lower())


def _remember(model: str, answer: HubAnswer, config: dict[str, Any] | None) -> None:
    from tasks.core.files import write_json

    try:
        write_json(cache_file(model), {"model": model, "parameters": answer.parameters, "gated": answer.gated,
                                       "config": config, "checked_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    except OSError as exc:  # a read-only home must not stop a run
        log.info("model check not cached: %s", exc)


def recalled(model: str) -> dict[str, Any] | None:
    from tasks.core.files import read_json

    try:
        return read_json(cache_file(model))
    except (OSError, ValueError):
        return None


def download(verdict: dict[str, Any], link_mb_s: float, volume: bool) -> None:
    """How much the pod downloads before training, how long that takes at a stated link speed, and
    whether a network volume should keep it between runs."""
    parameters = verdict.get("parameters")
    if not parameters:
        return
    quantized_build = verdict.get("model_to_load") != verdict.get("base_model")
    size = verdict.get("build_bytes") or parameters * (BYTES_PER_PARAM["4bit"] if quantized_build else BYTES_PER_PARAM["bf16"])
    if verdict.get("fallback_model"):  # the bf16 weights, downloaded once if the pre-quantized build will not load
        verdict["fallback_bytes"] = int(parameters * BYTES_PER_PARAM["bf16"])
    minutes = size / (link_mb_s * 1e6) / 60
    verdict.update(download_bytes=int(size), download_gb=round(size / 1e9, 1),
                   download_minutes=round(minutes, 1), download_link_mb_s=link_mb_s)
    if size / 1e9 > LARGE_DOWNLOAD_GB and not volume:
        verdict["download_advice"] = (
            f"every run downloads ~{size / 1e9:.0f} GB of {verdict['model_to_load']} before training "
            f"(~{minutes:.0f} min at {link_mb_s:.0f} MB/s, billed); a network volume ([runpod] network_volume_id) "
            f"keeps it between runs")
        log.warning("%s", verdict["download_advice"])


PINNED_STACK = Path(__file__).resolve().parents[2] / "remote" / "requirements-gpu.txt"


def pinned(package: str, requirements: Path = PINNED_STACK) -> str | None:
    """The version of `package` the pod's stack pins (remote/requirements-gpu.txt), None when unpinned."""
    try:
        lines = requirements.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        name, sep, version = line.split("#", 1)[0].strip().partition("==")
        if sep and name.strip().lower() == package:
            return version.strip()
    return None


def prequantized_moe_loads(transformers: str | None) -> bool:
    """Whether a transformers release loads a published per-expert 4-bit MoE build (one 4-bit Linear per
    expert, bitsandbytes' quant state beside each). Up to 4.x the experts are modules of their own, so it
    does. From 5.0 they are fused 3-D tensors and the checkpoint conversion cannot merge packed 4-bit
    experts with their quant state: measured on an H200 with 5.17 ("Undefined Operation encountered!")
    and on the CPU with 5.23 (size mismatch, unexpected quant-state keys); Unsloth's issue #4032.
    tests/model/test_prequantized_moe.py pins the fact, so the release that fixes it is noticed."""
    if not transformers:
        return False
    major = transformers.split(".", 1)[0]
    return major.isdigit() and int(major) < 5


def _moe_build(model: str, moe_build: str, endpoint: str | None) -> dict[str, Any]:
    """Which build of a mixture-of-experts model to download for a 4-bit load. "auto" takes the published
    4-bit build (~17 GB for Qwen3-30B-A3B) only where the pinned stack loads it, else the bf16 weights
    (~61 GB), quantized while loading; "prequantized" asks for the build anyway (the preflight checks it
    on the pod and the load falls back to bf16 once); "bf16" never tries it. Whichever is downloaded is
    loaded by its exact name: Unsloth's name mapping would otherwise fetch another copy."""
    transformers = pinned("transformers")
    if moe_build == "bf16":
        return {"model_to_load": model, "moe_build": "bf16 ([training] moe_build = \"bf16\")"}
    if moe_build == "auto" and not prequantized_moe_loads(transformers):
        return {"model_to_load": model, "moe_build": (
            f"bf16: the pinned stack (transformers {transformers or 'unpinned'}) cannot load a per-expert 4-bit "
            f"MoE checkpoint, so the bf16 weights are downloaded and quantized while loading")}
    build = four_bit_build(model)
    found = ask_hub(build, endpoint)
    if not found.exists:
        return {"model_to_load": model, "moe_build": f"bf16 (no published 4-bit build {build}: {found.detail or 'none'})"}
    return {"model_to_load": build, "fallback_model": model, "moe_build": "prequantized", "build_bytes": found.storage}


def check(model: str, gpu_types: tuple[str, ...], quantize: str, endpoint: str | None = None,
          link_mb_s: float = DOWNLOAD_MB_S, volume: bool = False, moe_build: str = "auto",
          gpu_count: int = 1, sharding: str = "never", max_gpus: int = 8, load: plan.Load = plan.Load()) -> dict[str, Any]:
    """The verdict, as model-check.json holds it; raises ModelCheckError for a model we must refuse."""
    answer = ask_hub(model, endpoint)
    verdict: dict[str, Any] = {"base_model": model, "checked": answer.exists is not None,
                               "model_to_load": model, "load_in_4bit": quantize == "always",
                               "gpu_types": list(gpu_types)}
    config = hub_config(model, endpoint) if answer.exists else None
    if answer.exists is None:
        earlier = recalled(model)
        if earlier and earlier.get("parameters"):
            log.warning("Could not ask the model hub about %s (%s): using its answer of %s", model, answer.detail,
                        earlier.get("checked_at"))
            verdict["warning"] = (f"model hub not reachable ({answer.detail}); used its answer about {model} of "
                                  f"{earlier.get('checked_at')}")
            answer = HubAnswer(True, gated=bool(earlier.get("gated")), parameters=earlier["parameters"])
            config = earlier.get("config")
        else:
            verdict["warning"] = f"model hub not reachable ({answer.detail}); {model} was not checked"
            if quantize == "auto":  # the size is unknown: never rent on a guess that may not fit in bf16
                verdict["load_in_4bit"] = True
                verdict["warning"] += "; its size is unknown, so it is loaded in 4-bit"
            log.warning("Could not ask the model hub about %s: %s", model, verdict["warning"])
            return verdict
    if answer.exists is False:
        raise ModelCheckError(f"[training] base_model {model!r} does not exist on the model hub ({answer.detail}); "
                              f"check the id (e.g. 'Qwen/Qwen3-30B-A3B'); nothing was rented")
    token = bool(os.environ.get(HF_TOKEN_ENV))
    if (answer.gated or answer.private) and not token:
        kind = "gated (its license must be accepted on the hub)" if answer.gated else "private or gated"
        raise ModelCheckError(f"[training] base_model {model!r} is {kind}: accept it with your account and export "
                              f"{HF_TOKEN_ENV}; nothing was rented")
    if verdict["checked"]:
        _remember(model, answer, config)
    verdict["parameters"] = answer.parameters
    verdict["base_config"] = config  # its architecture: the GGUF note, the preflight's tiny model of its family
    verdict.update(gguf_note(config))
    if not answer.parameters:
        return verdict
    judged = [g for g in gpu_types if g in GPU_MEMORY_GB]
    precision = "4bit" if quantize == "always" else "bf16"
    fits = [g for g in judged if GPU_MEMORY_GB[g] >= needed_gb(answer.parameters, precision)]
    if not fits and judged and quantize == "auto":
        four = [g for g in judged if GPU_MEMORY_GB[g] >= needed_gb(answer.parameters, "4bit")]
        if four:
            chosen = _moe_build(model, moe_build, endpoint) if is_moe(config) else {"model_to_load": four_bit_build(model)}
            build = chosen["model_to_load"]
            how = "quantized to 4-bit while loading" if build == model else f"from its 4-bit build {build}"
            log.info("%s needs ~%.0f GB in bf16, more than %s: loading it %s (~%.0f GB of GPU memory)", model,
                     needed_gb(answer.parameters, "bf16"), ", ".join(judged), how, needed_gb(answer.parameters, "4bit"))
            verdict.update(chosen, load_in_4bit=True)
            precision, fits = "4bit", four
    verdict["needed_gb"] = round(needed_gb(answer.parameters, precision), 1)
    verdict["precision"] = precision
    shape = plan.KNOWN.get(model) or plan.Shape.from_config(answer.parameters, config)
    if sharding == "fsdp" or (judged and not fits and sharding == "auto" and precision == "bf16"):
        return _sharded(verdict, model, shape, list(gpu_types), quantize, gpu_count, max_gpus, load, sharding,
                        link_mb_s, volume)
    if judged and not fits and sharding == "auto":  # 4-bit asked for, and it fits no GPU: never sharded
        plan.shard(model, shape, list(gpu_types), load, max_gpus, quantize)
    if judged and not fits:
        bigger = sorted((g for g, mem in GPU_MEMORY_GB.items() if mem >= verdict["needed_gb"]), key=GPU_MEMORY_GB.get)
        choices = []
        if precision == "bf16":
            choices.append(f"its 4-bit build {four_bit_build(model)!r} ([training] quantize = \"auto\", "
                           f"~{needed_gb(answer.parameters, '4bit'):.0f} GB)")
        if bigger:
            choices.append(f"a bigger GPU in [runpod] gpu_types, e.g. {bigger[0]!r} ({GPU_MEMORY_GB[bigger[0]]} GB)")
        if gpu_count > 1:
            choices.append(f"not more GPUs alone: [runpod] gpu_count = {gpu_count} trains data-parallel, every GPU "
                           f"holding the whole model")
        choices.append("sharding its bf16 weights over several GPUs (FSDP2: [training] sharding = \"auto\")")
        raise ModelCheckError(
            f"{model} needs about {verdict['needed_gb']:.0f} GB of GPU memory in {precision} "
            f"({answer.parameters / 1e9:.1f}B parameters), more than "
            + ", ".join(f"{g} ({GPU_MEMORY_GB[g]} GB)" for g in judged)
            + "; cheaper choices: " + "; ".join(choices) + ". Nothing was rented")
    if judged and fits != judged:
        log.warning("%s does not fit %s: only %s will be rented", model,
                    ", ".join(g for g in judged if g not in fits), ", ".join(fits))
    verdict["gpu_types"] = [g for g in gpu_types if g in fits or g not in GPU_MEMORY_GB]
    if gpu_count > 1:
        verdict["data_parallel"] = (
            f"{gpu_count} GPUs train data-parallel (torchrun): each holds the whole model (~{verdict['needed_gb']:.0f} GB "
            f"in {precision}), so it goes up to {gpu_count}x faster at {gpu_count}x the price per hour; it never makes a "
            f"model fit that one GPU cannot hold ([training] sharding does)")
    download(verdict, link_mb_s, volume)
    return verdict


def _sharded(verdict: dict[str, Any], model: str, shape: plan.Shape, gpu_types: list[str], quantize: str,
             gpu_count: int, max_gpus: int, load: plan.Load, sharding: str, link_mb_s: float,
             volume: bool) -> dict[str, Any]:
    """The bf16 weights sharded over several GPUs: the plan (printed and recorded before renting) and the
    GPU type it rents; 4-bit weights are never sharded."""
    plan.bf16_only(quantize, f"[training] sharding = \"{sharding}\" shards {model}")
    chosen = (plan.forced(gpu_types, gpu_count, shape, load) if sharding == "fsdp"
              else plan.shard(model, shape, gpu_types, load, max_gpus, quantize))
    for line in chosen.lines():
        log.info("%s", line)
    verdict.update(plan=chosen.record(), model_to_load=model, load_in_4bit=False, precision="bf16",
                   needed_gb=chosen.chosen.gb_per_gpu, gpu_types=[chosen.chosen.gpu])
    for key in ("fallback_model", "moe_build", "build_bytes"):  # a 4-bit build considered before: not downloaded
        verdict.pop(key, None)
    download(verdict, link_mb_s, volume)
    return verdict


def inputs(settings: Settings) -> dict[str, Any]:
    """Everything the model check reads, and nothing else: `check_model` is computed from exactly these,
    and its up-to-date check (dodo.py) compares exactly these, so no setting the check uses can be left
    out of it (a changed gpu_count or moe_build checks the model again)."""
    t, r = settings.training, settings.runpod
    return {"model": t.base_model, "quantize": t.quantize, "moe_build": t.moe_build,
            "gpu_types": list(r.gpu_types), "gpu_count": r.gpu_count, "volume": bool(r.network_volume_id),
            "endpoint": os.environ.get("HF_ENDPOINT") or None, "sharding": t.sharding, "max_gpus": r.max_gpus,
            "load": [t.max_seq_length, t.per_device_train_batch_size, t.lora_rank]}


def judge(model: str, quantize: str, moe_build: str, gpu_types: list[str], gpu_count: int, volume: bool,
          endpoint: str | None, sharding: str, max_gpus: int, load: list[int]) -> dict[str, Any]:
    """The verdict model-check.json holds: a local model's architecture, or the hub's answer (check)."""
    if model == TINY or model.startswith(("/", "./", "~")) or Path(model).expanduser().is_dir():
        local = _local_config(model)
        verdict = {"base_model": model, "checked": False, "reason": "a local model: nothing to ask the hub",
                   "model_to_load": model, "load_in_4bit": quantize == "always", "base_config": local}
        verdict.update(gguf_note(local))
        if sharding == "fsdp":  # a local model is not sized: sharded over gpu_count processes as asked
            plan.bf16_only(quantize, "[training] sharding = \"fsdp\"")
            verdict.update(plan=plan.forced(gpu_types, gpu_count, None, plan.Load(*load)).record(), load_in_4bit=False)
        return verdict
    verdict = check(model, tuple(gpu_types), quantize, endpoint, volume=volume,
                    moe_build=moe_build, gpu_count=gpu_count, sharding=sharding, max_gpus=max_gpus,
                    load=plan.Load(*load))
    log.info("Base model %s: %s", model,
             f"~{verdict['needed_gb']} GB in {verdict['precision']}, loading {verdict['model_to_load']}"
             if verdict.get("needed_gb") else ("exists on the hub" if verdict["checked"] else "not checked"))
    return verdict


def check_model(ctx: RunContext) -> None:
    """The check_model stage: model-check.json, what will be loaded on which GPUs (or a refusal)."""
    from tasks.core.files import write_json

    verdict = judge(**inputs(ctx.settings))
    if verdict.get("data_parallel"):
        log.info("%s", verdict["data_parallel"])
    write_json(ctx.paths.model_check_file, verdict)


def _local_config(model: str) -> dict[str, Any] | None:
    """The architecture of a local base model: the tiny one's family, or the folder's config.json."""
    if model == TINY:
        from tasks.model import families
        from tasks.model.tiny import SPEC

        fam = families.family(SPEC["architecture"])
        return {"architectures": [fam.model_class], "model_type": fam.model_type}
    from tasks.core.files import read_json

    try:
        return read_json(Path(model).expanduser() / "config.json")
    except (OSError, ValueError):
        return None
