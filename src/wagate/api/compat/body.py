"""A seed's JSON body read as raw bytes first (a signature covers them), then validated."""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from wagate.api.message_body import decode_json
from wagate.api.nul import check_data
from wagate.errors import InvalidInput

M = TypeVar("M", bound=BaseModel)


def parse_json(raw: bytes) -> dict[str, Any]:
    """A JSON object; a 422 naming ``body`` when it is not one, naming the field holding a NUL."""
    data = decode_json(raw)
    if not isinstance(data, dict):
        raise InvalidInput("body", "request body must be a JSON object")
    check_data(data)
    return data


def validate_at(model: type[M], value: Any, *where: str) -> M:
    """``value`` as ``model``; a 422 whose field is the dotted path under ``where``."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False)
        for error in errors:
            error["loc"] = (*where, *error["loc"])
        raise RequestValidationError(errors) from None
