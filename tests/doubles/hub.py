"""A model hub double on 127.0.0.1: `GET /api/models/<org>/<name>` as the hub answers it."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CONFIGS = {  # config.json as the hub serves it (/<model>/resolve/main/config.json)
    "Qwen/Qwen3-30B-A3B": {"architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "num_experts": 128},
    "Qwen/Qwen3-0.6B": {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3"},
    "meta-llama/Llama-3.1-8B": {"architectures": ["LlamaForCausalLM"], "model_type": "llama"},
    "state-spaces/mamba-2.8b-hf": {"architectures": ["MambaForCausalLM"], "model_type": "mamba"},
}
MODELS = {
    "Qwen/Qwen3-30B-A3B": {"gated": False, "safetensors": {"total": 30_532_122_624}},
    "meta-llama/Llama-3.1-8B": {"gated": "manual", "safetensors": {"total": 8_030_261_248}},
    "Qwen/Qwen3-0.6B": {"gated": False, "safetensors": {"total": 751_632_384}},
    "someone/private-model": None,  # 401 without a token
    "state-spaces/mamba-2.8b-hf": {"gated": False, "safetensors": {"total": 2_768_345_600}},
}


class HubDouble:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str | None]] = []
        double = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                double.requests.append((self.path, self.headers.get("Authorization")))
                if self.path.endswith("/resolve/main/config.json"):
                    model = self.path.removeprefix("/").removesuffix("/resolve/main/config.json")
                    if model not in CONFIGS:
                        return self._send(404, {"error": "Entry not found"})
                    return self._send(200, CONFIGS[model])
                model = self.path.removeprefix("/api/models/")
                if model not in MODELS:
                    return self._send(404, {"error": "Repository not found"})
                info = MODELS[model]
                if info is None and not self.headers.get("Authorization"):
                    return self._send(401, {"error": "Invalid credentials"})
                self._send(200, {"id": model, **(info or {"gated": False})})

            def _send(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> "HubDouble":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
