#!/usr/bin/env bash
# Debugging aid for CI: does llama.cpp's server (the xllamacpp wheel) start here and answer?
# Generates the test suite's tiny model, starts the server as the integration fixtures do,
# asks for one chat completion and one embedding, stops it, and prints the server log on failure.
# Usage: .ci/llamacpp-check.sh [python]   (default: .venv-ci/bin/python, else .venv/bin/python, else python3)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${1:-}"
if [ -z "$PYTHON" ]; then
    for candidate in .venv-ci/bin/python .venv/bin/python python3; do
        if command -v "$candidate" >/dev/null 2>&1; then PYTHON="$candidate"; break; fi
    done
fi

workdir="$(mktemp -d)"
trap 'rm -rf "$workdir"' EXIT

"$PYTHON" - "$workdir" <<'PY'
import sys
import time
from pathlib import Path

sys.path.insert(0, "tests/integration")
import httpx
import xllamacpp
from llamacpp import LlamaCppServer, ServerStartError, write_tiny_llama

workdir = Path(sys.argv[1])
print(f"xllamacpp {xllamacpp.__version__}")
started = time.monotonic()
model = write_tiny_llama(workdir / "tiny-llama.gguf")
print(f"model written in {time.monotonic() - started:.2f}s: {model.path.stat().st_size} bytes")
started = time.monotonic()
try:
    server = LlamaCppServer.start(model.path, workdir / "server.log", embeddings=True)
except ServerStartError as exc:
    print(f"FAILED to start: {exc}")
    sys.exit(1)
print(f"server healthy in {time.monotonic() - started:.2f}s at {server.base_url}")
try:
    with httpx.Client(timeout=30) as client:
        chat = client.post(
            f"{server.v1_url}/chat/completions",
            json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8},
        )
        print(f"chat: {chat.status_code} {chat.text[:200]}")
        emb = client.post(f"{server.v1_url}/embeddings", json={"input": ["hi"]})
        print(f"embeddings: {emb.status_code}, {len(emb.json()['data'][0]['embedding'])} dimensions")
        ok = chat.status_code == 200 and emb.status_code == 200
finally:
    server.stop()
if not ok:
    print((workdir / "server.log").read_text(errors="replace")[-3000:])
print("OK" if ok else "FAILED")
sys.exit(0 if ok else 1)
PY
