"""The simulator as a Flask app: Marketo's endpoints and the control API."""
from __future__ import annotations

from typing import Any

from flask import Flask
from werkzeug.exceptions import RequestEntityTooLarge

from gateway.simulators.marketo.activities import (
    activities_view,
    activity_types_view,
    lead_changes_view,
    paging_token_view,
)
from gateway.simulators.marketo.auth import token_view
from gateway.simulators.marketo.control import register_control_api
from gateway.simulators.marketo.exports import (
    export_cancel_view,
    export_create_view,
    export_enqueue_view,
    export_file_view,
    export_status_view,
)
from gateway.simulators.marketo.http import RestView, front_door, rest_endpoint, too_large
from gateway.simulators.marketo.leads import leads_view
from gateway.simulators.marketo.lists import smart_list_by_name_view, static_list_by_name_view
from gateway.simulators.marketo.protocol import SimError
from gateway.simulators.marketo.state import SimulatorState


def _add_rest_rule(app: Flask, path: str, kind: str, view: RestView, method: str = "GET") -> None:
    """Serve ``view`` at ``path`` as a REST endpoint counted under ``kind`` in stats."""
    app.add_url_rule(path, kind, rest_endpoint(kind)(view), methods=[method])


def create_simulator_app(state: SimulatorState | None = None) -> Flask:
    """The simulator as a Flask app; ``app.config["SIMULATOR_STATE"]`` holds the state."""
    app = Flask(__name__)
    app.config["SIMULATOR_STATE"] = state if state is not None else SimulatorState()
    app.json.sort_keys = False  # type: ignore[attr-defined]

    app.before_request(front_door)
    app.register_error_handler(RequestEntityTooLarge, too_large)

    # Marketo
    app.add_url_rule("/identity/oauth/token", "token", token_view, methods=["GET", "POST"])
    app.add_url_rule(
        "/rest/v1/leads.json", "leads", rest_endpoint("leads")(leads_view), methods=["GET", "POST"]
    )

    _add_rest_rule(app, "/rest/v1/activities/types.json", "activity_types", activity_types_view)
    _add_rest_rule(app, "/rest/v1/activities/pagingtoken.json", "paging_token", paging_token_view)
    _add_rest_rule(app, "/rest/v1/activities.json", "activities", activities_view)
    _add_rest_rule(app, "/rest/v1/activities/leadchanges.json", "lead_changes", lead_changes_view)
    export = "/bulk/v1/leads/export"
    _add_rest_rule(app, f"{export}/create.json", "export_create", export_create_view, "POST")
    _add_rest_rule(app, f"{export}/<export_id>/enqueue.json", "export_enqueue", export_enqueue_view, "POST")
    _add_rest_rule(app, f"{export}/<export_id>/status.json", "export_status", export_status_view)
    _add_rest_rule(app, f"{export}/<export_id>/file.json", "export_file", export_file_view)
    _add_rest_rule(app, f"{export}/<export_id>/cancel.json", "export_cancel", export_cancel_view, "POST")

    _add_rest_rule(app, "/rest/asset/v1/staticList/byName.json", "static_list_by_name", static_list_by_name_view)
    _add_rest_rule(app, "/rest/asset/v1/smartList/byName.json", "smart_list_by_name", smart_list_by_name_view)

    def _unknown_rest(subpath: str) -> dict[str, Any]:
        raise SimError("610", "Requested resource not found")

    for prefix in ("rest", "bulk"):
        app.add_url_rule(
            f"/{prefix}/<path:subpath>",
            f"{prefix}_unknown",
            rest_endpoint("unknown")(_unknown_rest),
            methods=["GET", "POST", "PUT", "DELETE"],
        )

    register_control_api(app)
    return app
