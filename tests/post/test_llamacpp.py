"""adapter.gguf in the real llama.cpp: it loads, it moves the output, it gives peft's greedy tokens,
it merges with llama-export-lora, and a corrupted adapter is refused.

The base model is the tiny qwen2 written as an F32 GGUF. Both sides compute in float32, so the
logits differ by rounding only (~1e-5 here, see test_gguf.py); a greedy token can only differ where
the two best logits are closer than that. The test first checks that peft's smallest top-1/top-2
margin along the path is far above it (1e-3), then asks for every token to be equal: a wrong
scale, a missing permutation or a swapped tensor changes tokens, rounding cannot.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tasks.post import gguf_lora
from tests import llamacpp
from tests.conftest import threads
from tests.post.test_gguf_lora import _adapter, tiny_base  # noqa: F401  (tiny_base is a fixture)

PROMPT = "The meeting notes"
STEPS = 24
MARGIN = 1e-3


@pytest.fixture(scope="module")
def files(tiny_base, tmp_path_factory) -> dict[str, Path]:  # noqa: F811
    folder = tmp_path_factory.mktemp("llamacpp")
    adapter = _adapter(tiny_base, folder / "adapter")
    gguf_lora.convert(adapter, folder / "adapter.gguf")
    return {"model": tiny_base, "adapter": adapter, "base.gguf": llamacpp.write_base_gguf(tiny_base, folder / "base.gguf"),
            "adapter.gguf": folder / "adapter.gguf", "folder": folder}


def _special_ids(model_dir: Path) -> list[int]:
    from transformers import AutoTokenizer

    return sorted(AutoTokenizer.from_pretrained(model_dir).all_special_ids)


def complete(bin_dir: Path, model: Path, *extra: str, banned: list[int], prompt: str = PROMPT) -> subprocess.CompletedProcess:
    """Greedy completion of PROMPT; special tokens banned so every generated token prints as text.

    The build drains llama.cpp's log thread at exit (tests/llamacpp.py); the loop is a second guard:
    a run whose known last line is missing ("\\n\\n" after the text, "unable to create context"
    after a refusal) is read again, up to three times.
    """
    bias = ["--logit-bias", ",".join(f"{token}-inf" for token in banned)] if banned else []
    argv = [str(bin_dir / "llama-completion"), "-m", str(model), *extra, "-p", prompt, "-n", str(STEPS), "--temp", "0",
            "--seed", "0", "-no-cnv", "--ignore-eos", "--no-warmup", "--simple-io", "--no-display-prompt",
            "-t", str(threads()),
            "-c", "256", "-v", *bias]
    for _ in range(3):
        proc = subprocess.run(argv, capture_output=True, timeout=120, check=False)
        whole = proc.stdout.endswith(b"\n\n") if proc.returncode == 0 else b"unable to create context" in proc.stderr
        if whole:
            break
    proc.stdout = proc.stdout.removesuffix(b"\n\n")
    return proc


def _bytes_of_token() -> dict[str, int]:
    """GPT-2's byte-level alphabet, reversed: each printable stand-in char back to its byte."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("\u00a1"), ord("\u00ac") + 1), *range(ord("\u00ae"), 256)]
    chars, extra = {}, 0
    for byte in range(256):
        if byte in keep:
            chars[chr(byte)] = byte
        else:
            chars[chr(256 + extra)] = byte
            extra += 1
    return chars


def prompt_tokens(stderr: bytes) -> list[int]:
    line = re.search(r"tokens: \[(.*)\]", stderr.decode(errors="replace"))
    assert line, stderr[-2000:]
    return [int(n) for n in re.findall(r":(\d+)'?(?:,|$)", line.group(1).replace(" ", ""))]


def peft_greedy(model_dir: Path, adapter: Path | None, banned: list[int],
                prompt: str = PROMPT) -> tuple[list[int], bytes, float]:
    """peft's greedy continuation: token ids, the bytes they print, and the smallest top-1/top-2 margin."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    if adapter is not None:
        model = PeftModel.from_pretrained(model, adapter)
    model.eval()
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    out, margin = [], float("inf")
    with torch.no_grad():
        for _ in range(STEPS):
            logits = model(torch.tensor([ids + out])).logits[0, -1].clone()
            logits[banned] = -float("inf")
            top = torch.topk(logits, 2).values
            margin = min(margin, (top[0] - top[1]).item())
            out.append(int(logits.argmax()))
    to_byte = _bytes_of_token()
    printed = bytes(to_byte[c] for token in tokenizer.convert_ids_to_tokens(out) for c in token)
    return out, printed, margin


def test_llamacpp_applies_the_adapter_as_peft_does(llama_bin, files):
    banned = _special_ids(files["model"])
    base = complete(llama_bin, files["base.gguf"], banned=banned)
    lora = complete(llama_bin, files["base.gguf"], "--lora", str(files["adapter.gguf"]), banned=banned)
    assert base.returncode == 0 and lora.returncode == 0, base.stderr[-2000:] + lora.stderr[-2000:]

    from transformers import AutoTokenizer

    hf_prompt = AutoTokenizer.from_pretrained(files["model"])(PROMPT, add_special_tokens=False)["input_ids"]
    assert prompt_tokens(lora.stderr) == hf_prompt, "llama.cpp and transformers tokenize the prompt differently"

    want_base, text_base, margin_base = peft_greedy(files["model"], None, banned)
    want_lora, text_lora, margin_lora = peft_greedy(files["model"], files["adapter"], banned)
    print(f"\nprompt {PROMPT!r} -> {hf_prompt}; {STEPS} greedy tokens, smallest top-1/top-2 margin "
          f"{min(margin_base, margin_lora):.4f}")
    print(f"base   llama.cpp {base.stdout!r}\n       peft      {text_base!r}")
    print(f"+lora  llama.cpp {lora.stdout!r}\n       peft      {text_lora!r}")
    assert min(margin_base, margin_lora) > MARGIN, "the tiny model's greedy path is too close to a tie to compare"
    assert want_lora != want_base, "the adapter does not move peft's output: the test would prove nothing"
    assert base.stdout == text_base
    assert lora.stdout == text_lora  # the adapter, read by llama.cpp, moves the output exactly as in peft
    assert lora.stdout != base.stdout


def test_llama_export_lora_merges_what_the_post_step_serves(llama_bin, files):
    merged = files["folder"] / "merged.gguf"
    proc = subprocess.run([str(llama_bin / "llama-export-lora"), "-m", str(files["base.gguf"]), "--lora",
                           str(files["adapter.gguf"]), "-o", str(merged), "-t", str(threads())],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    banned = _special_ids(files["model"])
    with_lora = complete(llama_bin, files["base.gguf"], "--lora", str(files["adapter.gguf"]), banned=banned)
    from_merged = complete(llama_bin, merged, banned=banned)
    assert from_merged.returncode == 0, from_merged.stderr[-2000:]
    assert from_merged.stdout == with_lora.stdout


def _rewrite(good: Path, out: Path, *, arch: str | None = None, transpose_a: bool = False,
             adapter_type: bool = True) -> Path:
    """A copy of adapter.gguf with one thing wrong, as a buggy writer would make it."""
    import gguf
    import numpy as np

    reader = gguf.GGUFReader(str(good))
    writer = gguf.GGUFWriter(str(out), arch or reader.get_field("general.architecture").contents())
    if adapter_type:
        writer.add_string("general.type", "adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", float(reader.get_field("adapter.lora.alpha").contents()))
    for tensor in reader.tensors:
        data = np.array(tensor.data).reshape([int(n) for n in reversed(tensor.shape)])
        if transpose_a and tensor.name.endswith(".lora_a"):
            data = data.T
        writer.add_tensor(tensor.name, np.ascontiguousarray(data))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


@pytest.mark.parametrize(("change", "said"), [
    ({"transpose_a": True}, "shape"),
    ({"arch": "llama"}, "arch"),
    ({"adapter_type": False}, "adapter"),
])
def test_llamacpp_refuses_a_corrupted_adapter(llama_bin, files, change, said):
    bad = _rewrite(files["adapter.gguf"], files["folder"] / f"bad-{next(iter(change))}.gguf", **change)
    proc = complete(llama_bin, files["base.gguf"], "--lora", str(bad), banned=[])
    error = [line for line in proc.stderr.decode(errors="replace").splitlines() if " E " in line]
    print(f"\n{change}: rc={proc.returncode}; " + " | ".join(line.split(" E ", 1)[1] for line in error[:2]))
    assert proc.returncode != 0
    assert any("lora" in line.lower() for line in error) and any(said in line.lower() for line in error)
