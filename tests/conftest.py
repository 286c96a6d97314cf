"""Shared fixtures. Nothing may come from the Hugging Face hub: tests run offline."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json  # noqa: E402
import threading  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

# CI has 2 cores shared by the test process and AsyncVectorEnv workers: one torch thread is much faster than two
# contending ones (measured 40x on a loaded machine).
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen2.5-VL checkpoint folder (built once per test session)."""
    from agents.tiny import ensure_tiny_model

    return ensure_tiny_model(tmp_path_factory.getbasetemp() / "tiny-models")


ChatReply = Callable[[dict], str]


@pytest.fixture()
def chat_server() -> Iterator[Callable[[ChatReply], tuple[str, list[dict]]]]:
    """Start a real OpenAI-style chat-completions server on loopback whose replies come from `reply(request)`.

    Returns (base_url ending in /v1, the list the server appends every request body to).
    """
    servers: list[ThreadingHTTPServer] = []

    def start(reply: ChatReply) -> tuple[str, list[dict]]:
        received: list[dict] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                received.append(body)
                if self.path != "/v1/chat/completions":
                    self.send_error(404)
                    return
                payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": reply(body)}}]})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload.encode())))
                self.end_headers()
                self.wfile.write(payload.encode())

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/v1", received

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
