"""`/v1/models`: the names the model is served under (vLLM's `OpenAIServingModels`).

One process serves one model (vLLM does the same), possibly under several names given with
`--served-model-name`; a request may use any of them, or leave `model` out.
"""

from __future__ import annotations

from http import HTTPStatus

from minivllm.server.errors import OpenAIError
from minivllm.server.protocol import ModelCard, ModelList


class OpenAIServingModels:
    def __init__(self, served_model_names: list[str], model_path: str, max_model_len: int) -> None:
        self.served_model_names = served_model_names
        self.model_path = model_path
        self.max_model_len = max_model_len

    def check_model(self, model: str | None) -> str:
        """The name to answer with; 404 for a model this server does not serve."""
        if model is None or model == "":
            return self.served_model_names[0]
        if model not in self.served_model_names:
            raise OpenAIError(f"The model `{model}` does not exist.", HTTPStatus.NOT_FOUND,
                              param="model")
        return model

    def model_card(self, name: str) -> ModelCard:
        return ModelCard(id=self.check_model(name), root=self.model_path,
                         max_model_len=self.max_model_len)

    def show_available_models(self) -> ModelList:
        """GET /v1/models: one model card per served name (all serve the same engine)."""
        # BEGIN SOLUTION lab4
        return ModelList(data=[self.model_card(name) for name in self.served_model_names])
        # END SOLUTION
