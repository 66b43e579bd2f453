"""Starting and stopping real servers for tests: a free loopback port, a health check, stop by PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def free_port() -> int:
    """A TCP port nothing listens on, on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving_in_thread(server: Any) -> Iterator[None]:
    """Run a ``uvicorn.Server`` on a daemon thread until the block ends, then stop it and join the thread."""
    import threading

    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join()


@contextmanager
def running_server(command: list[str], health_url: str, *, cwd: Path | None = None, env: dict[str, Any] | None = None,
                   timeout_s: float = 300) -> Iterator[subprocess.Popen[bytes]]:  # fmt: skip
    """Start ``command`` in its own process group, wait for ``health_url``, and stop it by PID on exit."""
    with running_servers([(command, health_url)], cwd=cwd, env=env, timeout_s=timeout_s) as (process,):
        yield process


@contextmanager
def running_servers(servers: list[tuple[list[str], str]], *, cwd: Path | None = None, env: dict[str, Any] | None = None,
                    timeout_s: float = 600) -> Iterator[list[subprocess.Popen[bytes]]]:  # fmt: skip
    """Start every ``(command, health_url)`` at once (their start-ups overlap), wait until each answers
    its health URL, and stop them all by PID on exit."""
    processes: list[subprocess.Popen[bytes]] = []
    try:
        quiet: dict[str, Any] = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        for command, _ in servers:
            processes.append(subprocess.Popen(command, cwd=cwd, env=env, start_new_session=True, **quiet))
        deadline = time.time() + timeout_s
        for process, (command, health_url) in zip(processes, servers, strict=True):
            while not _answers(health_url):
                if process.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"{command[:3]} did not start (exit code {process.poll()})")
                time.sleep(1)
        yield processes
    finally:
        for process in processes:
            stop(process)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def stop(process: subprocess.Popen[bytes], sig: signal.Signals = signal.SIGTERM) -> None:
    """Stop a server's whole process group by PID (``SIGKILL`` after 30 s); a no-op once it is gone."""
    try:
        os.killpg(process.pid, sig)
        process.wait(timeout=30)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


CPU_ENGINE = {
    "dtype": "float32",
    "max_model_len": 1024,
    "kv_cache_memory_bytes": 256 * 2**20,
    "enforce_eager": True,
    "block_size": 32,
}
"""vLLM engine options for the CPU build (DESIGN.md §4): a fixed KV cache, float32, no graph capture."""


def vllm_server_command(model: str, port: int, *extra: str) -> list[str]:
    """The command that starts a vLLM OpenAI-compatible server for ``model`` on loopback ``port`` (CPU options)."""
    return [
        *[sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model],
        *["--host", "127.0.0.1", "--port", str(port), "--dtype", "float32", "--max-model-len", "1024"],
        *["--kv-cache-memory-bytes", str(256 * 2**20), "--enforce-eager", *extra],
    ]


def vllm_requests_served(url: str) -> float:
    """How many requests a vLLM server has finished (its Prometheus counter ``vllm:request_success_total``)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    counts = [line.rsplit(" ", 1)[1] for line in text.splitlines() if line.startswith("vllm:request_success_total")]
    return sum(float(count) for count in counts)
