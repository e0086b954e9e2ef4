"""A small OpenAI-compatible chat-completions server on 127.0.0.1 with scripted replies.

Each reply is a dict: {"content": str} (200), {"status": 429|500, "body": ...},
{"delay": seconds} (sleep before answering), {"raw": bytes} (a broken body). When the
script runs out, the last reply repeats. Requests are recorded for assertions.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class ScriptedLLM:
    def __init__(self, replies: list[dict[str, Any]]):
        self.replies = list(replies)
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                try:
                    req = json.loads(body)
                except ValueError:
                    req = {}
                with outer._lock:
                    outer.requests.append(req)
                    outer.headers.append(dict(self.headers))
                    reply = outer.replies.pop(0) if len(outer.replies) > 1 else outer.replies[0]
                if reply.get("delay"):
                    time.sleep(reply["delay"])
                status = reply.get("status", 200)
                if "raw" in reply:
                    data = reply["raw"]
                elif status != 200:
                    data = json.dumps({"error": {"message": reply.get("body", f"scripted {status}"), "type": "server_error"}}).encode()
                else:
                    data = json.dumps({
                        "id": f"chatcmpl-{len(outer.requests)}", "object": "chat.completion", "created": 1_700_000_000,
                        "model": req.get("model", "test-model"),
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply["content"]}, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
                    }).encode()
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> "ScriptedLLM":
        self.thread.start()
        return self

    def __exit__(self, *a: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


def edit(desc: str, search: str, replace: str, path: str = "train.py", fence: bool = True) -> dict[str, Any]:
    block = f"{path}\n<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE"
    if fence:
        block = "```python\n" + block + "\n```"
    return {"content": f"DESCRIPTION: {desc}\nHYPOTHESIS: it should help\n\n{block}\n"}
