"""Temporary project roots and a real `doit` subprocess to run the pipeline in them."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.model import tiny as tinymodel
from tests.doubles import standin

REPO = Path(__file__).resolve().parent.parent
DODO = REPO / "dodo.py"
REMOTE = REPO / "remote"
EXAMPLES = REPO / "tests" / "data" / "notes"  # the tests' own notes (the shipped examples are the demo's)
DATE = "2026-11-27"


def toml_value(value: Any) -> str:
    return json.dumps(list(value)) if isinstance(value, (list, tuple)) else json.dumps(value)


def write_settings(root: Path, sections: dict[str, dict[str, Any]]) -> Path:
    lines = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {toml_value(value)}" for key, value in values.items()]
    path = root / "fullcycle.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class Project:
    root: Path
    env: dict[str, str]
    date: str = DATE

    @property
    def work(self) -> Path:
        return self.root / "metahuman-runs" / self.date

    @property
    def adapter(self) -> Path:
        return self.root / "out" / "adapters" / self.date / "adapter"

    @property
    def summary(self) -> dict[str, Any]:
        return json.loads((self.work / "run-summary.json").read_text())

    @property
    def trainer_log(self) -> str:
        return (self.root / "docs" / "run_logs" / self.date / "trainer.log").read_text()

    def doit(self, *args: str, timeout: float = 600, check: bool | None = None) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, "-m", "doit", "-f", str(DODO), *args], cwd=self.root, env=self.env,
                              capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"doit {' '.join(args)} exited {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
        return proc


def make_project(root: Path, *, source: Path = EXAMPLES, date: str = DATE, extra_env: dict[str, str] | None = None,
                 real_training: bool = False, **sections: dict[str, Any]) -> Project:
    """A project root with its own fullcycle.toml: local provider, tiny model, few training steps.

    Its pod runs the stand-in trainer (tests/doubles/standin.py) unless `real_training`: only the tests
    that check training itself pay for it."""
    root.mkdir(parents=True, exist_ok=True)
    base: dict[str, dict[str, Any]] = {
        "project": {"root": ".", "provider": "local"},
        "dataset": {"builder": "folder", "source": str(source)},
        "training": {"base_model": "tiny", "gradient_accumulation_steps": 4, "num_train_epochs": 1},
    }
    if not real_training:
        base["remote"] = {"trainer": standin.trainer_script()}
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    config = write_settings(root, base)
    return Project(root=root, env=project_env(config, date, extra_env), date=date)


def project_env(config: Path, date: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment `doit` runs with for a project: its settings file and date, this repository on
    PYTHONPATH, none of this machine's own FULLCYCLE_/RUNPOD_ settings but the tests' shared caches."""
    kept = {tinymodel.CACHE_ENV, "FULLCYCLE_MODEL_CHECKS"}  # the tests' shared caches (conftest.py)
    env = {k: v for k, v in os.environ.items() if k in kept or not k.startswith(("FULLCYCLE_", "RUNPOD_"))}
    env.update({"FULLCYCLE_CONFIG": str(config), "FULLCYCLE_DATE": date, "PYTHONPATH": str(REPO),
                "FULLCYCLE_SECRETS": str(config.parent / "secrets.env")})  # never the machine's own file
    env.update(extra or {})
    return env


def ran(output: str, task: str) -> bool:
    """Whether doit executed `task` (". task") rather than skipping it ("-- task")."""
    return any(line.strip() == f".  {task}" for line in output.splitlines())


def trainer(step: str = "") -> Any:
    """The pod's trainer package (remote/trainer/), imported as the pod imports it: `trainer("lora")`
    is remote/trainer/lora.py. The one way tests reach the trainer's code."""
    if str(REMOTE) not in sys.path:
        sys.path.insert(0, str(REMOTE))
    return importlib.import_module(f"trainer.{step}" if step else "trainer")


# config.json with the seed's seven fields (seed §2.3): trainer/schema.py fills every other one
SEED_CONFIG = {"base_model": "tiny", "lora_rank": 8, "num_train_epochs": 1, "learning_rate": 1e-4,
               "per_device_train_batch_size": 1, "gradient_accumulation_steps": 1, "max_seq_length": 256}


def train_config(**fields: Any) -> dict[str, Any]:
    """A config as the trainer reads it (remote/trainer/schema.py): the seed's fields, then `fields`."""
    return trainer("schema").parse({**SEED_CONFIG, **fields})


def trainer_entry() -> Any:
    """remote/train_unsloth.py itself (its run() and main()), loaded by path as the pod runs it."""
    trainer()
    spec = importlib.util.spec_from_file_location("train_unsloth", REMOTE / "train_unsloth.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
