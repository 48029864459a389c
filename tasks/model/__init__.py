"""The base model: asked of the model hub before anything is rented (hubcheck.py: exists, may be
downloaded, fits which GPU, what really downloads), the tiny model built here for a run with no
download (tiny.py), and the families both know (families.py).
"""

from tasks.model.families import family, gguf_unsupported
from tasks.model.hubcheck import ModelCheckError, check_model
from tasks.model.tiny import build_tiny_model

__all__ = ["ModelCheckError", "build_tiny_model", "check_model", "family", "gguf_unsupported"]
