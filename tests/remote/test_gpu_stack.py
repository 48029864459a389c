"""The GPU training set (remote/requirements-gpu.txt) checked without a GPU and without installing it.

Each pinned package's wheel is fetched with `pip download --no-deps` (small, pure-Python wheels
only; never torch, xformers or bitsandbytes, which are GBs of CUDA) into a cache outside the
repository, and its own metadata (Requires-Dist) is checked against the other pins. Then every
keyword the trainer passes to trl, transformers and Unsloth is looked up in those versions' source,
read with `ast`, never imported; and in the CPU set's installed versions too.
"""

from __future__ import annotations

import ast
import inspect
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement

from tests.helpers import REPO
from tests.wheels import wheel

HEAVY = {"torch", "torchvision", "xformers", "bitsandbytes"}  # CUDA wheels: their metadata is not fetched
TRAINER = [REPO / "remote" / "train_unsloth.py", *sorted((REPO / "remote" / "trainer").glob("*.py"))]  # every step
ENV = {**default_environment(), "sys_platform": "linux", "platform_machine": "x86_64", "python_version": "3.11",
       "python_full_version": "3.11.7", "platform_system": "Linux", "extra": ""}


def norm(name: str) -> str:
    return name.lower().replace("_", "-")


def pins() -> dict[str, str]:
    found = {}
    for line in (REPO / "remote" / "requirements-gpu.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"requirements-gpu.txt: {line!r} is not pinned with =="
            found[norm(name)] = version
    return found


def metadata(whl: Path):
    with zipfile.ZipFile(whl) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        return Parser().parsestr(z.read(name).decode())


def source(whl: Path, path: str) -> ast.Module:
    with zipfile.ZipFile(whl) as z:
        return ast.parse(z.read(path).decode())


@pytest.fixture(scope="module")
def wheels() -> dict[str, Path]:
    return {name: wheel(name, version) for name, version in pins().items() if name not in HEAVY}


def test_no_two_pins_contradict(wheels):
    pinned = pins()
    problems = []
    for name, whl in wheels.items():
        for text in metadata(whl).get_all("Requires-Dist") or []:
            req = Requirement(text)
            if req.marker and not req.marker.evaluate(ENV):
                continue
            other = norm(req.name)
            if other in pinned and not req.specifier.contains(pinned[other], prereleases=True):
                problems.append(f"{name}=={pinned[name]} needs {req} but {other}=={pinned[other]} is pinned")
    assert not problems, "\n".join(problems)
    print(f"\n{len(wheels)} wheels' Requires-Dist checked against {len(pinned)} pins: no contradiction")


def test_torch_and_xformers_are_the_pair_unsloth_names(wheels):
    pinned = pins()
    pair = {}
    for text in metadata(wheels["unsloth"]).get_all("Requires-Dist") or []:
        req = Requirement(text)
        if req.marker and 'extra == "cu128onlytorch2110"' in str(req.marker) and norm(req.name) in ("torch", "xformers"):
            pair[norm(req.name)] = str(next(iter(req.specifier)).version).split("+")[0]
    assert pair == {"torch": pinned["torch"], "xformers": pinned["xformers"]}, pair


# --------------------------------------------------------------------------- what the trainer calls


def trainer_keywords(callee: str) -> set[str]:
    """Keyword names the trainer passes to every call of `callee` (a name or an attribute)."""
    names = set()
    for node in (n for path in TRAINER for n in ast.walk(ast.parse(path.read_text()))):
        if isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if called == callee:
                names |= {k.arg for k in node.keywords if k.arg}
    return names


def class_fields(tree: ast.Module, cls: str) -> set[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == cls:
            return {t.target.id for t in node.body if isinstance(t, ast.AnnAssign) and isinstance(t.target, ast.Name)}
    raise AssertionError(f"class {cls} not found")


def function_params(tree: ast.Module, cls: str | None, func: str) -> set[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and (cls is None or node.name == cls):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name == func:
                    args = item.args
                    return {a.arg for a in args.args + args.kwonlyargs}
    raise AssertionError(f"{cls}.{func} not found")


@pytest.mark.slow  # imports trl here (~8 s of CPU): the fast tier's largest single cost
def test_sft_config_fields_exist_in_both_sets(wheels):
    used = trainer_keywords("SFTConfig")
    assert {"max_length", "output_dir"} <= used
    gpu = class_fields(source(wheels["trl"], "trl/trainer/sft_config.py"), "SFTConfig")
    gpu |= class_fields(source(wheels["transformers"], "transformers/training_args.py"), "TrainingArguments")
    from transformers import TrainingArguments
    from trl import SFTConfig

    cpu = set(inspect.signature(SFTConfig).parameters) | set(inspect.signature(TrainingArguments).parameters)
    assert not used - gpu, f"not in trl {pins()['trl']}: {sorted(used - gpu)}"
    assert not used - cpu, f"not in the CPU set's trl: {sorted(used - cpu)}"
    print(f"\nSFTConfig: {len(used)} fields in trl {pins()['trl']} and the CPU set's: {sorted(used)}")


@pytest.mark.slow  # imports trl here, as the SFTConfig check does
def test_sft_trainer_keywords_exist_in_both_sets(wheels):
    used = trainer_keywords("SFTTrainer")
    gpu = function_params(source(wheels["trl"], "trl/trainer/sft_trainer.py"), "SFTTrainer", "__init__")
    from trl import SFTTrainer

    cpu = set(inspect.signature(SFTTrainer.__init__).parameters)
    assert not used - gpu and not used - cpu, (used - gpu, used - cpu)
    print(f"\nSFTTrainer: {sorted(used)} in both sets")


def test_from_pretrained_keywords_exist_in_both_sets(wheels):
    unsloths = {"model_name", "max_seq_length", "load_in_4bit", "use_exact_model_name"}
    used = trainer_keywords("from_pretrained") - unsloths
    text = zipfile.ZipFile(wheels["transformers"]).read("transformers/modeling_utils.py").decode()
    for keyword in used:  # transformers 5 takes most loading options through **kwargs, popped by name
        assert f'"{keyword}"' in text or f"{keyword}:" in text or f"{keyword}=" in text, keyword
    import transformers.modeling_utils as mu

    cpu_text = Path(mu.__file__).read_text()
    assert all(f'"{k}"' in cpu_text or f"{k}:" in cpu_text for k in used)
    print(f"\nfrom_pretrained: {sorted(used)} in transformers {pins()['transformers']} and the CPU set's")


def test_unsloth_calls_match_unsloth_source(wheels):
    whl = wheels["unsloth"]
    with zipfile.ZipFile(whl) as z:
        loader = ast.parse(z.read("unsloth/models/loader.py").decode())
    load_params = function_params(loader, "FastLanguageModel", "from_pretrained")
    used_load = {"model_name", "max_seq_length", "dtype", "load_in_4bit", "use_exact_model_name"}
    assert used_load <= trainer_keywords("from_pretrained")
    assert not used_load - load_params, sorted(used_load - load_params)
    peft_used = trainer_keywords("get_peft_model") - {"task_type"}
    with zipfile.ZipFile(whl) as z:
        llama = ast.parse(z.read("unsloth/models/llama.py").decode())
    peft_params = function_params(llama, "FastLlamaModel", "get_peft_model")
    assert not peft_used - peft_params, sorted(peft_used - peft_params)
    print(f"\nunsloth {pins()['unsloth']}: from_pretrained {sorted(used_load)}, get_peft_model {sorted(peft_used)}")


def test_every_pin_lies_in_the_range_an_image_is_checked_against():
    """ranges-gpu.txt is what an image's own stack must satisfy to be used as it is: each range must hold
    the pin the trainer's calls were checked against, and name every pinned package."""
    from packaging.specifiers import SpecifierSet

    ranges = {}
    for line in (REPO / "remote" / "ranges-gpu.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            req = Requirement(line)
            ranges[norm(req.name)] = req.specifier
    pinned = pins()
    assert set(ranges) == set(pinned), set(ranges) ^ set(pinned)
    outside = {name: (pinned[name], str(spec)) for name, spec in ranges.items()
               if not SpecifierSet(str(spec)).contains(pinned[name], prereleases=True)}
    assert not outside, outside
