"""Every error the gate answers is JSON: {"error": {"code", "message", "fields"}} — never an HTML page."""
from __future__ import annotations

import logging

from flask import Flask, jsonify, request
from marshmallow import Schema, ValidationError
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    503: "unavailable",
}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, fields: dict | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields
        self.headers = headers or {}


def error_response(status: int, code: str, message: str, fields: dict | None = None, headers: dict | None = None):
    body = {"code": code, "message": message}
    if fields is not None:
        body["fields"] = fields
    response = jsonify(error=body)
    response.status_code = status
    response.headers.update(headers or {})
    return response


def not_migrated(missing: str) -> ApiError:
    """The database answers, but `gateway migrate` has not brought its schema up to date."""
    return ApiError(503, "database_not_migrated", f"The gate is not ready: {missing}.", headers={"Retry-After": "5"})


def load_query(schema: Schema) -> dict:
    """The query string through its schema; its errors say it is the query string that is wrong, not the body."""
    try:
        return schema.load(request.args.to_dict())
    except ValidationError as error:
        raise ApiError(422, "invalid_request", "The query string has a parameter that is not valid.",
                       error.messages) from None


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(error: ApiError):
        return error_response(error.status, error.code, error.message, error.fields, error.headers)

    @app.errorhandler(ValidationError)
    def _validation_error(error: ValidationError):
        return error_response(422, "invalid_request", "The request body does not have the expected shape.", error.messages)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):
        status = error.code or 500
        message = error.description or error.name
        if status == 413:
            message = f"The request body is larger than this gate accepts: at most {app.config['MAX_CONTENT_LENGTH']:,} bytes."
        return error_response(status, HTTP_CODES.get(status, "http_error"), message, headers=_allow_header(error))

    @app.errorhandler(SQLAlchemyError)
    def _database_error(error: SQLAlchemyError):
        log.error("database error: %s", type(error).__name__, exc_info=app.debug)
        missing = _missing_migrations(app)
        if missing:
            return _api_error(not_migrated(missing))
        return error_response(503, "database_unavailable", "The gate cannot reach its database; try again shortly.",
                              headers={"Retry-After": "5"})

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        log.exception("unexpected error")
        return error_response(500, "internal_error", "The gate failed unexpectedly; the error was logged.")


def _missing_migrations(app: Flask) -> str | None:
    """After a database error: whether the cause is a schema that `gateway migrate` has not brought up to date."""
    from gateway.store.db import pending_migrations

    try:
        return pending_migrations(app.extensions["gate"].store.engine)
    except SQLAlchemyError:
        return None  # the database does not answer at all: the plain 503 says so


def _allow_header(error: HTTPException) -> dict:
    allowed = getattr(error, "valid_methods", None)
    return {"Allow": ", ".join(allowed)} if allowed else {}
