"""After the adapter is home: the verdict on it and its promotion (verdict.py), the GGUF LoRA
(gguf_lora.py), the Ollama Modelfile (ollama.py), the `latest` link (latest.py), the user's own
commands (user_commands.py), and what each step made of it (outcomes.py).
"""

from tasks.post.gguf_lora import make_gguf
from tasks.post.latest import update_latest
from tasks.post.ollama import make_modelfile
from tasks.post.user_commands import run_user_commands
from tasks.post.verdict import evaluate

__all__ = ["evaluate", "make_gguf", "make_modelfile", "run_user_commands", "update_latest"]
