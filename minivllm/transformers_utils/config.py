"""Model configs: where a model name points, its config.json, its generation defaults
(vLLM: `vllm/transformers_utils/config.py`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from transformers import AutoConfig, PretrainedConfig

from minivllm.config import DEFAULT_MODEL
from minivllm.transformers_utils.embedded_model import get_embedded_model_path
from minivllm.transformers_utils.presets import get_preset_config

RANDOM_PREFIX = "random:"

# Fields of generation_config.json that become default SamplingParams (vLLM reads the same).
SAMPLING_FIELDS = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty",
                   "max_new_tokens")


def resolve_model_path(model: str) -> Path:
    """The local Hugging Face folder behind `model` (not for `random:` models)."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    if model == DEFAULT_MODEL:
        return get_embedded_model_path()
    raise ValueError(
        f"model {model!r} is not a local folder. minivllm downloads nothing: fetch it first "
        f"(`huggingface-cli download {model} --local-dir DIR`) and pass DIR, or use "
        f"{DEFAULT_MODEL!r} (embedded) or 'random:<preset>'.")


def get_model_config(model: str) -> PretrainedConfig:
    """The Hugging Face config of a local folder, the embedded default or a random preset."""
    if model.startswith(RANDOM_PREFIX):
        return get_preset_config(model.removeprefix(RANDOM_PREFIX))
    return AutoConfig.from_pretrained(resolve_model_path(model))


def get_generation_config(model: str) -> dict[str, Any]:
    """`{"eos_token_id": [ids...], <sampling defaults present in generation_config.json>}`.

    The EOS ids come from generation_config.json when the folder has one (chat models often
    list several there, e.g. Llama 3 Instruct), else from config.json; always as a list.
    """
    raw: dict[str, Any] = {}
    if not model.startswith(RANDOM_PREFIX):
        path = resolve_model_path(model) / "generation_config.json"
        if path.is_file():
            raw = json.loads(path.read_text())
    eos = raw.get("eos_token_id", get_model_config(model).eos_token_id)
    eos_ids = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
    defaults = {key: raw[key] for key in SAMPLING_FIELDS if raw.get(key) is not None}
    return {"eos_token_id": eos_ids, **defaults}


def get_rope_parameters(config: PretrainedConfig) -> dict[str, Any]:
    """`{"rope_type": ..., "rope_theta": ..., <scaling fields>}` from any transformers version:
    transformers 5 keeps them in `config.rope_parameters`, 4.x in `rope_theta` and
    `rope_scaling` (where older files say "type" instead of "rope_type")."""
    params = getattr(config, "rope_parameters", None)
    if params is None:
        params = {**(getattr(config, "rope_scaling", None) or {}),
                  "rope_theta": config.rope_theta}
    params = dict(params)
    params["rope_type"] = params.get("rope_type", params.pop("type", "default"))
    return params
