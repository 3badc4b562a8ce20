"""`POST /v1/hooks/marketo`: Marketo's webhook pushes an unsubscribe the moment it happens (gateway/pushes.py)."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from gateway.api.auth import require
from gateway.api.shared import json_body
from gateway.domain import Source
from schemas.marketo import MarketoPushAnswerSchema, MarketoPushSchema

bp = Blueprint("marketo_hook", __name__)

push_schema = MarketoPushSchema()
answer_schema = MarketoPushAnswerSchema()


@bp.post("/v1/hooks/marketo")
@require("caller", sources=(Source.MARKETO.value,))
def marketo_push():
    push = push_schema.load(json_body())  # marshmallow's ValidationError becomes a 422 with its messages
    outcome = current_app.extensions["gate"].pushes.take(push.email, push.unsubscribed)
    return jsonify(answer_schema.dump(outcome))
