#!/usr/bin/env python3
"""LoRA training on the pod: Unsloth on CUDA when it is installed, transformers + peft + trl otherwise.

Reads the uploaded dataset ({instruction, input, output} per line) and config.json, trains, and saves
into the output folder: the adapter (adapter_config.json, adapter_model.safetensors), the tokenizer,
a copy of the base model's config.json (all a GGUF LoRA conversion needs, so the 60 GB base model
never has to come home) and metrics.json (loss per step, duration, versions).

Exit codes: 0 trained, 2 bad input (dataset/config), 3 model could not be loaded, 1 training failed.
It runs standalone on the pod: it imports nothing from the orchestrator.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

# Read by torch's CUDA allocator when torch loads: set before anything imports torch (unsloth sets
# it too, assuming torch is not loaded yet; this module imports torch before unsloth).
os.environ.setdefault("PYTORCH_ALLOC_CONF", "expandable_segments:True")

REQUIRED = ("base_model", "lora_rank", "num_train_epochs", "learning_rate",
            "per_device_train_batch_size", "gradient_accumulation_steps", "max_seq_length")
# Every linear layer of attention and MLP, by the names the families use (Phi-3/4 fuse q/k/v into
# qkv_proj and gate/up into gate_up_proj); only the names a model has are kept.
TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "qkv_proj", "gate_proj", "up_proj", "down_proj",
                  "gate_up_proj"]
# On a mixture-of-experts model the attention projections only: they convert to a GGUF LoRA, while a
# LoRA on the fused expert weights does not (and the MLP names there are the experts').
ATTENTION_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "qkv_proj"]
# Never targeted by "auto": Qwen3.5's linear-attention (gated delta net) projections, which llama.cpp
# reorders when it converts the base model, so a LoRA on them has no GGUF form.
NOT_AUTO = ("linear_attn.",)


def is_moe(model_config) -> bool:
    return bool(getattr(model_config, "num_experts", 0) or getattr(model_config, "num_local_experts", 0)
                or "moe" in str(getattr(model_config, "model_type", "")))


def target_modules(config: dict, model) -> list[str]:
    """[training] target_modules, or by architecture: all linear layers, attention only on MoE.

    "auto" names the layers by their short names (what Unsloth's fast LoRA path knows), keeping only
    those the model has; a short name that also matches a module with no GGUF form (Qwen3.5's linear
    attention, fused experts) is given by the full names of the others instead."""
    asked = config.get("target_modules") or "auto"
    moe = is_moe(model.config)
    if asked != "auto":
        if moe and any(m in asked for m in ("gate_proj", "up_proj", "down_proj")):
            say("WARNING: LoRA on the expert MLPs of a mixture-of-experts model does not convert to a GGUF LoRA "
                "(adapter.gguf will be refused); the attention projections do")
        return list(asked)
    wanted = ATTENTION_MODULES if moe else TARGET_MODULES
    found: dict[str, tuple[list[str], list[str]]] = {leaf: ([], []) for leaf in wanted}
    for name, module in model.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        if leaf in found and getattr(getattr(module, "weight", None), "ndim", 0) == 2:
            excluded = any(p in name for p in NOT_AUTO) or ".experts." in name
            found[leaf][excluded].append(name)
    chosen: list[str] = []
    for leaf, (keep, skip) in found.items():
        if keep:
            chosen += keep if skip else [leaf]
    if not chosen:
        raise InputError(f"no module of {wanted} in this model: set [training] target_modules")
    return chosen


# Used when the tokenizer has no chat template (documented in the README): Alpaca-style sections.
FALLBACK_PROMPT = "### Instruction:\n{instruction}\n\n{input_block}### Response:\n"


class InputError(Exception):
    pass


def say(message: str) -> None:
    print(f"[train] {message}", flush=True)


def load_config(path: Path) -> dict:
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"config {path}: {exc}") from None
    missing = [k for k in REQUIRED if k not in config]
    if missing:
        raise InputError(f"config {path}: missing {', '.join(missing)}")
    return config


def check_rows(path: Path) -> int:
    """Stream the dataset once to validate it; nothing is kept (a dataset can be many GB)."""
    count = 0
    try:
        with path.open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InputError(f"dataset {path}:{number}: invalid JSON ({exc})") from None
                if not isinstance(row, dict) or not row.get("instruction") or not row.get("output"):
                    raise InputError(f"dataset {path}:{number}: needs instruction and output")
                count += 1
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"dataset {path}: {exc}") from None
    if not count:
        raise InputError(f"dataset {path} is empty")
    return count


def render(tokenizer, user: str) -> str:
    """The user turn as the model will see it when served, answer prompt included. Thinking off: a
    hybrid-reasoning template (Qwen3) then opens the answer with an empty think block, and the
    Modelfile serves the very same prefix (prompt_format)."""
    return tokenizer.apply_chat_template([{"role": "user", "content": user}], tokenize=False,
                                         add_generation_prompt=True, enable_thinking=False)


def prompt_format(tokenizer) -> dict | None:
    """What surrounds the user's text and opens the answer in training, for serving it the same way."""
    if not tokenizer.chat_template:
        return None
    marker = "\x00USER\x00"
    before, _, after = render(tokenizer, marker).partition(marker)
    return {"user_prefix": before, "assistant_prefix": after, "eos": tokenizer.eos_token or ""}


def prompt_completion(tokenizer):
    """Chat-template the user turn; the completion is the answer plus EOS, so loss covers only it."""
    eos = tokenizer.eos_token or ""

    def convert(row: dict) -> dict:
        user = row["instruction"] + (f"\n\n{row['input']}" if row.get("input") else "")
        if tokenizer.chat_template:
            prompt = render(tokenizer, user)
        else:
            block = f"### Input:\n{row['input']}\n\n" if row.get("input") else ""
            prompt = FALLBACK_PROMPT.format(instruction=row["instruction"], input_block=block)
        return {"prompt": prompt, "completion": row["output"] + eos}

    return convert


MAX_BYTES_PER_TOKEN = 32  # the orchestrator's cheap bound (tasks/dataset.py); checked again here
PROGRESS_EVERY = 5000


def _rows(path: str, limit: int, stamp: str, max_bytes: int):
    """The dataset's rows as datasets wants them; `stamp` only keys its cache to this file's version.
    A line over `max_bytes` cannot fit max_seq_length: it is skipped before anything tokenizes it."""
    with open(path, "rb") as fh:
        count = 0
        for line in fh:
            if not line.strip():
                continue
            if 0 <= limit <= count:
                return
            if len(line) > max_bytes:
                continue
            row = json.loads(line)
            yield {"instruction": row["instruction"], "input": row.get("input") or "", "output": row["output"]}
            count += 1
            if count % PROGRESS_EVERY == 0:
                say(f"read {count} samples")


def load_training_set(path: Path, tokenizer, config: dict):
    """Memory-mapped Arrow built from our own line reader, not a list in RAM. (datasets' JSON loader
    takes data_files as a pattern and expands `$VARS` and globs in it: a path with `$` broke it.)
    When max_steps bounds the run, only the rows those steps can see are read and tokenized."""
    from datasets import Dataset

    max_steps = int(config.get("max_steps", -1))
    limit = -1
    if max_steps > 0:
        limit = max_steps * int(config["per_device_train_batch_size"]) * int(config["gradient_accumulation_steps"])
    st = path.stat()
    max_len = int(config["max_seq_length"])
    dataset = Dataset.from_generator(_rows, gen_kwargs={"path": str(path), "limit": limit,
                                                        "stamp": f"{st.st_size}-{st.st_mtime_ns}",
                                                        "max_bytes": max_len * MAX_BYTES_PER_TOKEN})
    say(f"formatting {len(dataset)} samples with the chat template")
    dataset = dataset.map(prompt_completion(tokenizer), remove_columns=dataset.column_names)
    return fit_to_length(dataset, tokenizer, max_len, config.get("too_long", "drop"))


def fit_to_length(dataset, tokenizer, max_len: int, policy: str):
    """The exact check: samples whose tokens exceed max_seq_length are dropped, or their completion
    cut (policy "cut"), never silently truncated by the trainer. Tokenized in batches, with progress."""
    state = {"done": 0}

    def measure(batch: dict) -> dict:
        prompts = tokenizer(batch["prompt"], add_special_tokens=False)["input_ids"]
        completions = tokenizer(batch["completion"], add_special_tokens=False)["input_ids"]
        keep, out_completion = [], []
        for prompt, completion, text in zip(prompts, completions, batch["completion"]):
            fits = len(prompt) + len(completion) <= max_len
            if not fits and policy == "cut" and len(prompt) < max_len - 1:
                # the EOS stays at the end: a sample cut short must still learn to stop
                eos = tokenizer.eos_token or ""
                room = max_len - len(prompt) - (1 if eos else 0)
                text = tokenizer.decode(completion[:room]) + eos
                fits = True
            keep.append(fits)
            out_completion.append(text)
        state["done"] += len(keep)
        if state["done"] % PROGRESS_EVERY < len(keep):
            say(f"tokenized {state['done']} samples")
        return {"completion": out_completion, "fits": keep}

    dataset = dataset.map(measure, batched=True, batch_size=256)
    too_long = len(dataset) - sum(dataset["fits"])
    if too_long:
        say(f"{too_long} sample(s) longer than max_seq_length {max_len} tokens were dropped")
    dataset = dataset.filter(lambda row: row["fits"]).remove_columns(["fits"])
    if len(dataset) == 0:
        raise InputError(f"every sample is longer than max_seq_length {max_len} tokens")
    return dataset


def resolve_model(config: dict, config_path: Path) -> str:
    if config.get("base_model_dir"):
        path = (config_path.parent / config["base_model_dir"]).resolve()
        if not (path / "config.json").is_file():
            raise InputError(f"base_model_dir {path} has no config.json")
        return str(path)
    return config.get("model_to_load") or config["base_model"]


class NoCuda(Exception):
    """A GPU is there and torch cannot use it: training on the CPU would load a 30B model and die."""


def nvidia_smi() -> dict[str, str] | None:
    """The host's GPU, driver and the CUDA version the driver supports; None when there is no GPU."""
    if not shutil.which("nvidia-smi"):
        return None
    try:
        query = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                               capture_output=True, text=True, timeout=30)
        header = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    if query.returncode != 0 or not query.stdout.strip():
        return None
    name, _, driver = query.stdout.strip().splitlines()[0].partition(",")
    cuda = header.split("CUDA Version:", 1)[1].split()[0] if "CUDA Version:" in header else "unknown"
    return {"gpu": name.strip(), "driver": driver.strip(), "cuda": cuda}


def check_cuda(gpu: dict[str, str] | None) -> None:
    """Stop before loading anything when a GPU is present and torch cannot use it."""
    if gpu is None:
        return
    import torch

    if torch.cuda.is_available():
        return
    build = f"torch {torch.__version__} built for CUDA {torch.version.cuda or 'none (a CPU build)'}"
    raise NoCuda(f"a GPU is present ({gpu['gpu']}, driver {gpu['driver']}, supports CUDA {gpu['cuda']}) but "
                 f"{build} cannot use it: nothing was loaded. Install a torch build for CUDA <= {gpu['cuda']} "
                 f"(or rent a host with a newer driver: [runpod] min_cuda_version)")


def use_unsloth() -> bool:
    if os.environ.get("FULLCYCLE_NO_UNSLOTH"):
        return False
    try:
        import torch

        if not torch.cuda.is_available():
            return False
        import unsloth  # noqa: F401  (must come before transformers/trl/peft)
    except ImportError:
        return False
    return True


def load_model(model_id: str, config: dict, unsloth: bool):
    if unsloth:
        from unsloth import FastLanguageModel

        model, tokenizer = FastLanguageModel.from_pretrained(
            model_name=model_id, max_seq_length=config["max_seq_length"], dtype=None,
            load_in_4bit=bool(config.get("load_in_4bit", False)),
        )
        model = FastLanguageModel.get_peft_model(
            model, r=config["lora_rank"], lora_alpha=config.get("lora_alpha", 2 * config["lora_rank"]),
            lora_dropout=config.get("lora_dropout", 0.0), target_modules=target_modules(config, model),
            use_gradient_checkpointing="unsloth", random_state=config.get("seed", 42),
        )
        return model, tokenizer
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_id)
    dtype = torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
    model = AutoModelForCausalLM.from_pretrained(model_id, dtype=dtype)
    lora = LoraConfig(
        r=config["lora_rank"], lora_alpha=config.get("lora_alpha", 2 * config["lora_rank"]),
        lora_dropout=config.get("lora_dropout", 0.0), task_type="CAUSAL_LM",
        target_modules=target_modules(config, model),
    )
    return get_peft_model(model, lora), tokenizer


def start_from(model, config: dict, input_dir: Path) -> None:
    """[training] start_from = "latest": today's LoRA begins with the last promoted adapter's weights."""
    folder = config.get("start_from")
    if not folder:
        return
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    weights = load_file(str(input_dir / folder / "adapter_model.safetensors"))
    result = set_peft_model_state_dict(model, weights)
    missing = [k for k in getattr(result, "missing_keys", []) if "lora_" in k]
    if missing:
        raise InputError(f"the previous adapter does not fit today's LoRA ({len(missing)} LoRA weights missing, e.g. "
                         f"{missing[0]}): start_from = \"base\" or the same targets and rank")
    say(f"LoRA initialised from the adapter of {(config.get('eval') or {}).get('previous_date')} "
        f"({len(weights)} tensors)")


def completion_loss(model, tokenizer, rows: list[dict], max_len: int) -> tuple[float | None, int]:
    """Mean loss per completion token (the prompt masked, as in training), and how many tokens."""
    import torch

    device = next(model.parameters()).device
    total, count = 0.0, 0
    with torch.no_grad():
        for row in rows:
            prompt = tokenizer(row["prompt"], add_special_tokens=False)["input_ids"]
            ids = (prompt + tokenizer(row["completion"], add_special_tokens=False)["input_ids"])[:max_len]
            if len(ids) <= len(prompt):
                continue
            x = torch.tensor([ids], device=device)
            logits = model(input_ids=x).logits[0, :-1].float()
            losses = torch.nn.functional.cross_entropy(logits, x[0, 1:], reduction="none")
            total += losses[len(prompt) - 1:].sum().item()
            count += len(ids) - len(prompt)
    return (round(total / count, 6) if count else None), count


def answer(model, tokenizer, prompt: str, max_new: int) -> str:
    import torch

    text = render(tokenizer, prompt) if tokenizer.chat_template else FALLBACK_PROMPT.format(
        instruction=prompt, input_block="")
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False).to(next(model.parameters()).device)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=max_new, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def evaluate(model, tokenizer, config: dict, input_dir: Path, unsloth: bool) -> dict:
    """Held-out loss of the base model, the previous promoted adapter and today's, and their greedy
    answers to a few prompts: in this process, on the loaded model, before anything is packed."""
    spec = config.get("eval") or {}
    if not spec.get("heldout"):
        return {"skipped": "no held-out set (see the dataset report: [eval] min_samples)"}
    started = time.time()
    try:
        if unsloth:
            from unsloth import FastLanguageModel

            FastLanguageModel.for_inference(model)
        model.eval()
        with open(input_dir / spec["heldout"], "rb") as fh:
            convert = prompt_completion(tokenizer)
            rows = [convert(json.loads(line)) for line in fh if line.strip()]
        max_len, max_new = int(config["max_seq_length"]), int(spec.get("max_new_tokens") or 48)
        found = {"heldout_samples": len(rows), "previous_date": spec.get("previous_date"),
                 "started_from": spec.get("previous_date") if config.get("start_from") else "base"}
        found["adapter_loss"], found["heldout_tokens"] = completion_loss(model, tokenizer, rows, max_len)
        prompts = spec.get("prompts") or []
        today = [answer(model, tokenizer, p, max_new) for p in prompts]
        with model.disable_adapter():
            found["base_loss"] = completion_loss(model, tokenizer, rows, max_len)[0]
            base = [answer(model, tokenizer, p, max_new) for p in prompts]
        previous = [None] * len(prompts)
        found["previous_loss"] = None
        if spec.get("previous_adapter"):
            model.load_adapter(str(input_dir / spec["previous_adapter"]), adapter_name="previous")
            model.set_adapter("previous")
            found["previous_loss"] = completion_loss(model, tokenizer, rows, max_len)[0]
            previous = [answer(model, tokenizer, p, max_new) for p in prompts]
            model.set_adapter("default")
            model.delete_adapter("previous")
        found["answers"] = [{"prompt": p, "base": b, "previous": v, "today": t}
                            for p, b, v, t in zip(prompts, base, previous, today)]
    except Exception as exc:  # the adapter is saved already: an evaluation that fails is reported, not fatal
        import traceback

        traceback.print_exc()
        return {"skipped": f"the evaluation failed: {type(exc).__name__}: {exc}",
                "seconds": round(time.time() - started, 2)}
    found["seconds"] = round(time.time() - started, 2)
    say(f"held-out loss: base {found['base_loss']}, previous {found['previous_loss']}, today {found['adapter_loss']} "
        f"({found['heldout_samples']} samples, {found['heldout_tokens']} tokens, {found['seconds']}s)")
    return found


def quiet_router(model) -> None:
    """trl turns a MoE model's router auxiliary loss on (output_router_logits, router_aux_loss_coef from
    its config); with the router frozen and LoRA on attention only it adds noise and memory."""
    config = getattr(model, "config", None)
    if config is None or not is_moe(config):
        return
    for name, off in (("output_router_logits", False), ("router_aux_loss_coef", 0.0)):
        if hasattr(config, name):
            setattr(config, name, off)
    say("mixture-of-experts: router auxiliary loss off (the router is not trained)")


class DownloadProgress:
    """While the base model downloads, say how far it is every PROGRESS_S: the hub's progress bars
    redraw with carriage returns, which a line follower never shows, so a long download looked hung."""

    def __init__(self, config: dict, every: float | None = None) -> None:
        self.expected = int(config.get("download_bytes") or 0)
        self.every = every or float(os.environ.get("FULLCYCLE_PROGRESS_S", "30"))
        self.root = Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface")
        self.done = threading.Event()
        self.start = self._size()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _size(self) -> int:
        total = 0
        for folder, _, files in os.walk(self.root):
            for name in files:
                try:
                    total += os.lstat(os.path.join(folder, name)).st_size
                except OSError:
                    pass
        return total

    def _run(self) -> None:
        started, last = time.time(), self.start
        while not self.done.wait(self.every):
            now = self._size()
            got, rate = now - self.start, (now - last) / self.every
            last = now
            line = f"downloading the base model: {got / 1e9:.2f} GB"
            if self.expected:
                left = max(self.expected - got, 0)
                eta = f", ~{left / rate / 60:.0f} min left" if rate > 0 else ""
                line += f" of {self.expected / 1e9:.1f} GB{eta}"
            say(f"{line} ({rate / 1e6:.1f} MB/s, {time.time() - started:.0f}s)")

    def stop(self) -> None:
        self.done.set()
        self.thread.join(timeout=5)


def quiet() -> None:
    """Keep the followed log readable: no progress bars, no deprecation chatter from the stack."""
    import warnings

    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*pin_memory.*")


def train(args: argparse.Namespace) -> int:
    started = time.time()
    quiet()
    config = load_config(args.config)
    samples = check_rows(args.data)
    model_id = resolve_model(config, args.config)
    gpu = nvidia_smi()
    check_cuda(gpu)
    unsloth = use_unsloth()
    say(f"{samples} samples, base model {config['base_model']}, backend {'unsloth' if unsloth else 'transformers+peft+trl'}"
        + (f", GPU {gpu['gpu']} (driver {gpu['driver']}, CUDA {gpu['cuda']})" if gpu else ""))
    loading = time.time()
    progress = DownloadProgress(config) if not Path(model_id).is_dir() else None
    try:
        model, tokenizer = load_model(model_id, config, unsloth)
    except Exception as exc:  # a wrong id or a missing file: say so plainly
        print(f"[train] ERROR: could not load base model {model_id!r}: {exc}", file=sys.stderr, flush=True)
        return 3
    finally:
        if progress:
            progress.stop()
    quiet_router(model)
    start_from(model, config, args.config.parent)
    load_seconds = round(time.time() - loading, 2)
    say(f"base model loaded (downloaded if not cached) in {load_seconds}s")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token

    import torch
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    losses: list[dict] = []

    class LossLog(TrainerCallback):
        def on_log(self, _args, state, _control, logs=None, **_kw):
            if logs and "loss" in logs:
                losses.append({"step": state.global_step, "loss": float(logs["loss"]),
                               "epoch": float(logs.get("epoch", 0.0))})
                say(f"step {state.global_step}/{state.max_steps} loss {logs['loss']:.4f}")

    bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    work = args.output.parent / (args.output.name + ".trainer")
    sft = SFTConfig(
        output_dir=str(work), num_train_epochs=float(config["num_train_epochs"]),
        learning_rate=float(config["learning_rate"]),
        per_device_train_batch_size=int(config["per_device_train_batch_size"]),
        gradient_accumulation_steps=int(config["gradient_accumulation_steps"]),
        max_length=int(config["max_seq_length"]), logging_steps=1, save_strategy="no", report_to=[],
        seed=int(config.get("seed", 42)), bf16=bf16, fp16=False, disable_tqdm=True,
        max_steps=int(config.get("max_steps", -1)),
    )
    dataset = load_training_set(args.data, tokenizer, config)
    trainer = SFTTrainer(model=model, args=sft, train_dataset=dataset, processing_class=tokenizer,
                         callbacks=[LossLog()])
    trained_at = time.time()
    trainer.train()
    train_seconds = round(time.time() - trained_at, 2)

    args.output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.output)  # saved before the evaluation: a failing evaluation never costs the adapter
    tokenizer.save_pretrained(args.output)
    base_config = Path(model_id) / "config.json"
    if base_config.is_file():
        shutil.copy(base_config, args.output / "base_model_config.json")
    else:
        model.base_model.model.config.to_json_file(args.output / "base_model_config.json")
    shutil.rmtree(work, ignore_errors=True)
    measured = evaluate(model, tokenizer, config, args.config.parent, unsloth)
    measured["train_seconds"] = train_seconds
    (args.output / "eval.json").write_text(json.dumps(measured, indent=2))
    metrics = {
        "base_model": config["base_model"],
        "gpu": gpu,
        "prompt_format": prompt_format(tokenizer),
        "samples": samples,
        "steps": losses,
        "final_loss": losses[-1]["loss"] if losses else None,
        "seconds": round(time.time() - started, 2),
        "model_load_seconds": load_seconds,
        "backend": "unsloth" if unsloth else "transformers+peft+trl",
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "peak_gpu_memory_gb": round(torch.cuda.max_memory_allocated() / 1e9, 3) if torch.cuda.is_available() else None,
        "versions": versions(),
    }
    (args.output / "metrics.json").write_text(json.dumps(metrics, indent=2))
    say(f"adapter saved to {args.output} in {metrics['seconds']}s, final loss {metrics['final_loss']}")
    return 0


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": sys.version.split()[0]}
    for name in ("torch", "transformers", "peft", "trl", "datasets", "unsloth"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/workspace/input/unsloth_dataset.jsonl"))
    parser.add_argument("--config", type=Path, default=Path("/workspace/input/config.json"))
    parser.add_argument("--output", type=Path, default=Path("/output/adapter"))
    args = parser.parse_args(argv)
    try:
        return train(args)
    except InputError as exc:
        print(f"[train] ERROR: {exc}", file=sys.stderr, flush=True)
        return 2
    except NoCuda as exc:
        print(f"[train] ERROR: {exc}", file=sys.stderr, flush=True)
        return 4
    except Exception as exc:
        import traceback

        traceback.print_exc()
        print(f"[train] ERROR: training failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
