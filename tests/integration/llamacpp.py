"""A real llama.cpp server for integration tests, serving a tiny model this module writes.

Two halves:

- ``write_tiny_llama`` writes a random-weight llama GGUF (~100K parameters, a
  byte-level SPM vocabulary, a ChatML template) in well under a second.
- ``LlamaCppServer.start`` runs llama.cpp's own HTTP server (the ``xllamacpp``
  wheel) in a child process, so a crash in native code cannot take pytest down,
  and waits for ``/health`` with a bounded poll.

Run as a script, this file is the child: it starts ``xllamacpp.Server`` on
127.0.0.1, port 0, prints the address it got and serves until its stdin closes,
which also happens when the parent dies, so no server outlives its test run.
It imports only the standard library and xllamacpp in that role.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import selectors
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

READY_PREFIX = "LLAMACPP_LISTENING "


# --- the model ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TinyModel:
    path: Path
    n_embd: int
    n_vocab: int
    n_ctx_train: int


CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

_SPECIAL = ("<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>")


def _vocabulary() -> tuple[list[str], list[int], list[int]]:
    """Tokens, their ``TokenType`` values, and which of them generation must never pick.

    Byte tokens let SPM encode any text; printable ASCII and the space as normal
    tokens are what answers are made of. Control and byte tokens are kept out of
    answers so a random model cannot stop early or emit control characters or
    invalid UTF-8.
    """
    import gguf

    tokens: list[str] = []
    types: list[int] = []
    banned: list[int] = []
    for text in _SPECIAL:
        banned.append(len(tokens))
        tokens.append(text)
        types.append(gguf.TokenType.UNKNOWN if text == "<unk>" else gguf.TokenType.CONTROL)
    for byte in range(256):
        banned.append(len(tokens))
        tokens.append(f"<0x{byte:02X}>")
        types.append(gguf.TokenType.BYTE)
    tokens.append("\u2581")  # SPM's space
    types.append(gguf.TokenType.NORMAL)
    for code in range(0x21, 0x7F):
        tokens.append(chr(code))
        types.append(gguf.TokenType.NORMAL)
    return tokens, [int(t) for t in types], banned


def write_tiny_llama(  # noqa: PLR0915 - writes a whole GGUF model: every tensor and key in order
    path: Path,
    *,
    n_embd: int = 64,
    n_layer: int = 2,
    n_head: int = 4,
    n_ff: int = 128,
    n_ctx_train: int = 1024,
    seed: int = 0,
) -> TinyModel:
    """Write a random-weight llama model to ``path``; deterministic for a given ``seed``."""
    import gguf
    import numpy as np

    tokens, types, banned = _vocabulary()
    n_vocab = len(tokens)
    rng = np.random.default_rng(seed)

    def rand(*shape: int) -> Any:
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    # Dimension 0 of the residual stream is a constant "bias" channel: every token
    # embedding carries 1.0 there and no layer writes to it, so after the final
    # norm it is large and positive. A negative output weight on that channel
    # pushes banned tokens far below every other logit, whatever the prompt.
    token_embd = rand(n_vocab, n_embd)
    token_embd[:, 0] = 1.0
    output = rand(n_vocab, n_embd)
    output[:, 0] = 0.0
    output[banned, 0] = -5.0

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("taskmodels-tiny-llama")
    writer.add_context_length(n_ctx_train)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(n_embd // n_head)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores([0.0] * n_vocab)
    writer.add_token_types(types)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    # SPM's default space prefix would put a "▁" after every special token, and the
    # JSON grammar llama.cpp builds must match "<|im_start|>assistant\n" exactly.
    writer.add_add_space_prefix(False)
    writer.add_chat_template(CHATML_TEMPLATE)

    writer.add_tensor("token_embd.weight", token_embd)
    writer.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    writer.add_tensor("output.weight", output)
    for layer in range(n_layer):
        attn_output = rand(n_embd, n_embd)
        attn_output[0, :] = 0.0
        ffn_down = rand(n_embd, n_ff)
        ffn_down[0, :] = 0.0
        blk = f"blk.{layer}"
        writer.add_tensor(f"{blk}.attn_norm.weight", np.ones(n_embd, dtype=np.float32))
        writer.add_tensor(f"{blk}.attn_q.weight", rand(n_embd, n_embd))
        writer.add_tensor(f"{blk}.attn_k.weight", rand(n_embd, n_embd))
        writer.add_tensor(f"{blk}.attn_v.weight", rand(n_embd, n_embd))
        writer.add_tensor(f"{blk}.attn_output.weight", attn_output)
        writer.add_tensor(f"{blk}.ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
        writer.add_tensor(f"{blk}.ffn_gate.weight", rand(n_ff, n_embd))
        writer.add_tensor(f"{blk}.ffn_up.weight", rand(n_ff, n_embd))
        writer.add_tensor(f"{blk}.ffn_down.weight", ffn_down)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return TinyModel(path=path, n_embd=n_embd, n_vocab=n_vocab, n_ctx_train=n_ctx_train)


# --- the server, parent side ---------------------------------------------------------------


class ServerStartError(RuntimeError):
    """The server did not come up; the message holds the tail of its log."""


@dataclass(slots=True)
class LlamaCppServer:
    """A running llama.cpp server child process."""

    process: subprocess.Popen[str]
    base_url: str
    log_path: Path
    api_key: str | None = field(default=None, repr=False)

    @classmethod
    def start(
        cls,
        model_path: Path,
        log_path: Path,
        *,
        n_ctx: int = 256,
        embeddings: bool = False,
        api_key: str | None = None,
        alias: str = "tiny-llama",
        timeout: float = 30.0,
    ) -> LlamaCppServer:
        """Start the server and return once ``/health`` answers 200, or raise ``ServerStartError``."""
        args = [sys.executable, str(Path(__file__).resolve()), "--model", str(model_path)]
        args += ["--n-ctx", str(n_ctx), "--alias", alias]
        if embeddings:
            args.append("--embeddings")
        env = {k: v for k, v in os.environ.items() if k != "LLAMACPP_TEST_API_KEY"}
        if api_key is not None:
            # Through the environment, not argv: the key must not show in `ps`.
            env["LLAMACPP_TEST_API_KEY"] = api_key
        log = log_path.open("w", encoding="utf-8")
        try:
            process = subprocess.Popen(
                args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, env=env
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        try:
            base_url = _read_address(process, deadline, log_path)
            _wait_healthy(process, base_url, deadline, log_path)
        except BaseException:
            _stop(process)
            raise
        return cls(process=process, base_url=base_url, log_path=log_path, api_key=api_key)

    @property
    def v1_url(self) -> str:
        return f"{self.base_url}/v1"

    def stop(self) -> None:
        _stop(self.process)


def _log_tail(log_path: Path, lines: int = 30) -> str:
    try:
        text = log_path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _read_address(process: subprocess.Popen[str], deadline: float, log_path: Path) -> str:
    stdout = process.stdout
    assert stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(stdout, selectors.EVENT_READ)
        while (remaining := deadline - time.monotonic()) > 0:
            if not selector.select(remaining):
                break
            line = stdout.readline()
            if not line:
                raise ServerStartError(
                    f"llama.cpp server exited with {process.wait()} before listening:\n{_log_tail(log_path)}"
                )
            if line.startswith(READY_PREFIX):
                return line[len(READY_PREFIX) :].strip().rstrip("/")
    raise ServerStartError(f"llama.cpp server printed no address in time:\n{_log_tail(log_path)}")


def _wait_healthy(process: subprocess.Popen[str], base_url: str, deadline: float, log_path: Path) -> None:
    import httpx2

    with httpx2.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise ServerStartError(f"llama.cpp server exited with {process.returncode}:\n{_log_tail(log_path)}")
            try:
                if client.get(f"{base_url}/health").status_code == 200:
                    return
            except httpx2.TransportError:
                pass
            time.sleep(0.05)  # poll interval, bounded by the deadline
    raise ServerStartError(f"llama.cpp server was not healthy in time:\n{_log_tail(log_path)}")


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None and process.stdin is not None:
        with contextlib.suppress(OSError):
            process.stdin.close()  # the child's cue to exit
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
    for stream in (process.stdin, process.stdout):
        if stream is not None and not stream.closed:
            stream.close()


# --- the server, child side ------------------------------------------------------------------


def _serve(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Serve a GGUF model with xllamacpp on 127.0.0.1, port 0.")
    parser.add_argument("--model", required=True)
    parser.add_argument("--n-ctx", type=int, default=256)
    parser.add_argument("--alias", default="tiny-llama")
    parser.add_argument("--embeddings", action="store_true")
    parser.add_argument("--seed", type=int, default=42)
    ns = parser.parse_args(argv)

    import xllamacpp  # type: ignore[import-untyped]

    params = xllamacpp.CommonParams()
    params.model.path = ns.model
    params.hostnames = ["127.0.0.1"]
    params.port = 0
    params.n_ctx = ns.n_ctx
    params.n_parallel = 1
    params.cpuparams.n_threads = 1
    params.cpuparams_batch.n_threads = 1
    params.warmup = False
    params.model_alias = {ns.alias}
    # A fixed seed makes the random model's answers repeat from run to run.
    params.sampling.seed = ns.seed
    if ns.embeddings:
        params.embedding = True
        # llama models default to no pooling, which /v1/embeddings refuses.
        params.pooling_type = xllamacpp.llama_pooling_type.LLAMA_POOLING_TYPE_MEAN
    api_key = os.environ.get("LLAMACPP_TEST_API_KEY")
    if api_key:
        params.api_keys = [api_key]

    server = xllamacpp.Server(params)
    out: IO[str] = sys.stdout
    out.write(f"{READY_PREFIX}{server.listening_address}\n")
    out.flush()
    sys.stdin.read()  # returns at EOF: the parent closed the pipe or died
    sys.stderr.flush()
    # Skip native destructors: the process is ending, and they can block on worker threads.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(_serve(sys.argv[1:]))


__all__ = ["READY_PREFIX", "LlamaCppServer", "ServerStartError", "TinyModel", "write_tiny_llama"]
