"""The trainer's definition of config.json (remote/trainer/schema.py), shared by loading that very file:
one type the orchestrator writes and the trainer reads, one home for its fields' defaults."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

SCHEMA = Path(__file__).resolve().parents[2] / "remote" / "trainer" / "schema.py"


def _load():
    spec = importlib.util.spec_from_file_location("fullcycle_trainer_schema", SCHEMA)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


schema = _load()
DEFAULTS = schema.TrainConfig(**dict.fromkeys(schema.SEED, 0))  # every field's default (the seed's are required)
