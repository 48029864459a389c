"""Today's training data: the raw JSONL from the configured builder (builders.py), cleaned as a
stream with every dropped line named (cleaning.py, report.py), its held-out part (heldout.py), and
the training config the pod receives (trainconfig.py).
"""

from tasks.data.cleaning import DatasetError, clean
from tasks.data.prepare import build_dataset, clean_dataset
from tasks.data.trainconfig import write_config

__all__ = ["DatasetError", "build_dataset", "clean", "clean_dataset", "write_config"]
