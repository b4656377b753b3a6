"""Model loading: what the engine calls to get a model, its config, tokenizer and generation
defaults (vLLM: `vllm/model_executor/model_loader/`)."""

from minivllm.model_executor.model_loader.loader import get_model, save_random_model
from minivllm.transformers_utils.config import get_generation_config, get_model_config
from minivllm.transformers_utils.tokenizer import get_tokenizer

__all__ = ["get_generation_config", "get_model", "get_model_config", "get_tokenizer",
           "save_random_model"]
