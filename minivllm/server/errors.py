"""Every failure leaves the server in OpenAI's error envelope, with vLLM's status codes.

    {"error": {"message": "...", "type": "BadRequestError", "param": null, "code": 400}}

vLLM builds these with `OpenAIServing.create_error_response` and a few exception handlers in
`api_server.py`. Here the serving code raises `OpenAIError`; the handlers installed by
`install_exception_handlers` turn it, FastAPI's validation errors (400, not FastAPI's 422),
unknown routes and any unexpected exception (500) into the envelope. A failing request gets an
error and nothing else happens: the engine and the other requests carry on.
"""

from __future__ import annotations

import logging
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from minivllm.engine.async_llm_engine import EngineDeadError
from minivllm.server.protocol import ErrorInfo, ErrorResponse

logger = logging.getLogger(__name__)

# `type` names the exception class the official `openai` client raises for the status.
_ERROR_TYPES = {
    HTTPStatus.BAD_REQUEST: "BadRequestError",
    HTTPStatus.UNAUTHORIZED: "AuthenticationError",
    HTTPStatus.NOT_FOUND: "NotFoundError",
    HTTPStatus.INTERNAL_SERVER_ERROR: "InternalServerError",
}


class OpenAIError(Exception):
    """Raised by the serving code to answer with an error (400 unless told otherwise)."""

    def __init__(self, message: str, status: HTTPStatus = HTTPStatus.BAD_REQUEST,
                 param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = HTTPStatus(status)
        self.param = param

    def to_response(self) -> ErrorResponse:
        return ErrorResponse(error=ErrorInfo(
            message=self.message, type=_ERROR_TYPES.get(self.status, self.status.phrase),
            param=self.param, code=self.status.value))

    def to_json_response(self) -> JSONResponse:
        return JSONResponse(self.to_response().model_dump(), status_code=self.status.value)


def _validation_error(exc: RequestValidationError) -> OpenAIError:
    """One readable line from pydantic's error list, e.g. `temperature: Input should be ...`,
    as a 400 OpenAIError (FastAPI's default would be a 422 in its own format); `param` names the
    first offending field. Malformed JSON reads "JSON decode error: ..."."""
    # BEGIN SOLUTION lab4
    messages, params = [], []
    for err in exc.errors():
        loc = [str(part) for part in err.get("loc", ()) if part != "body"]
        if err.get("type") == "json_invalid":
            message = f"JSON decode error: {err.get('ctx', {}).get('error', err['msg'])}"
        elif err.get("type") == "value_error":  # raised by our validators: their own words
            message = str(err.get("ctx", {}).get("error", err["msg"]))
        else:
            message = f"{'.'.join(loc) or 'body'}: {err['msg']}"
        if message not in messages:
            messages.append(message)
        if loc and err.get("type") != "json_invalid":
            params.append(loc[0])
    return OpenAIError("; ".join(messages) or "Invalid request",
                       param=params[0] if params else None)
    # END SOLUTION


def install_exception_handlers(app: FastAPI) -> None:
    @app.exception_handler(OpenAIError)
    async def _openai_error(_: Request, exc: OpenAIError) -> JSONResponse:
        return exc.to_json_response()

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_error(exc).to_json_response()

    @app.exception_handler(HTTPException)
    async def _http_error(_: Request, exc: HTTPException) -> JSONResponse:
        return OpenAIError(str(exc.detail), HTTPStatus(exc.status_code)).to_json_response()

    @app.exception_handler(EngineDeadError)
    async def _engine_dead(_: Request, exc: EngineDeadError) -> JSONResponse:
        # Expected once the engine has died (its traceback is logged once, by the engine).
        return OpenAIError(str(exc), HTTPStatus.INTERNAL_SERVER_ERROR).to_json_response()

    @app.exception_handler(Exception)
    async def _internal_error(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("Unexpected error while serving a request")
        return OpenAIError(f"Internal server error: {exc!r}",
                           HTTPStatus.INTERNAL_SERVER_ERROR).to_json_response()
