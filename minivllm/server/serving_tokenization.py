"""`POST /tokenize` and `POST /detokenize` (vLLM's `OpenAIServingTokenization`).

Not part of OpenAI's API: vLLM's own endpoints, handy to count tokens before sending a prompt
and to see what the chat template makes of a conversation. Both use the served model's
tokenizer and chat template, so the counts are exactly what a completion would use.
"""

from __future__ import annotations

from minivllm.server.errors import OpenAIError
from minivllm.server.protocol import (
    DetokenizeRequest,
    DetokenizeResponse,
    TokenizeChatRequest,
    TokenizeRequest,
    TokenizeResponse,
)
from minivllm.server.serving_engine import OpenAIServing


class OpenAIServingTokenization(OpenAIServing):
    def create_tokenize(self, request: TokenizeRequest) -> TokenizeResponse:
        self.models.check_model(request.model)
        try:
            if isinstance(request, TokenizeChatRequest):
                text = self.render_chat(
                    request.messages, add_generation_prompt=request.add_generation_prompt,
                    continue_final_message=request.continue_final_message,
                    chat_template_kwargs=request.chat_template_kwargs)
            else:
                text = request.prompt
        except ValueError as e:
            raise OpenAIError(str(e)) from e
        token_ids = self.tokenize(text, request.add_special_tokens)
        return TokenizeResponse(
            count=len(token_ids), max_model_len=self.max_model_len, tokens=token_ids,
            token_strs=self.tokenizer.convert_ids_to_tokens(token_ids)
            if request.return_token_strs else None)

    def create_detokenize(self, request: DetokenizeRequest) -> DetokenizeResponse:
        self.models.check_model(request.model)
        if request.tokens:  # an empty list decodes to an empty prompt
            self.check_token_ids(request.tokens)
        return DetokenizeResponse(prompt=self.tokenizer.decode(request.tokens))
