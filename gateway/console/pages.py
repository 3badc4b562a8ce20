"""The console's pages: integrations, mirror, check an address, audit (blocked sends: blocked.py)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from flask import current_app, flash, render_template, request
from flask_login import current_user

from gateway.api.admin import gate_status, settings_answer
from gateway.console import bp, redirect_to
from gateway.console.forms import (
    FAILURE_MODE_LABELS,
    MAX_ADDRESSES,
    ActionForm,
    CheckAddressesForm,
    CheckSwitchForm,
    FailureModeForm,
)
from gateway.decisions import CheckRequest, Message
from gateway.domain import RecipientType, Source, Workflow
from gateway.mirror_load import IDS_SOURCE
from gateway.settings_changes import VIA_CONSOLE, CheckStaysOff, change_settings, check_connection, current_settings
from schemas.common import recipient

AUDIT_PAGE = 50
CHECKED_VIA_WORDS = {
    "setting": "the setting: the check is off",
    "validation": "address validation",
    "mirror": "the mirror",
    "cache": "a recent answer from Marketo (cache)",
    "live": "Marketo, asked now",
    "policy": "the failure policy: Marketo did not answer",
}
SETTING_NAMES = {"marketo_check_enabled": "The unsubscribe check", "failure_mode": "Failure policy"}


def _gate():
    return current_app.extensions["gate"]


@bp.get("/")
def home():
    return redirect_to("console.integrations")


# --- integrations -------------------------------------------------------------------------------------------


@bp.get("/integrations")
def integrations():
    gate = _gate()
    settings = settings_answer(current_settings(gate))
    failure_form = FailureModeForm(failure_mode=settings["failure_mode"])
    return render_template(
        "console/integrations.html", title="Integrations", settings=settings,
        instance=urlsplit(gate.config.marketo_base_url).hostname if gate.config.marketo_base_url else None,
        salesforce=gate_status().get("salesforce"), action_form=ActionForm(), switch_form=CheckSwitchForm(),
        failure_form=failure_form, failure_labels=FAILURE_MODE_LABELS,
    )


@bp.post("/integrations/test-connection")
def test_marketo_connection():
    connected, message = check_connection(_gate())
    flash(message, "ok" if connected else "error")
    return redirect_to("console.integrations")


@bp.post("/integrations/check")
def switch_check():
    form = CheckSwitchForm()
    if not form.validate() or form.enabled.data not in ("on", "off"):
        flash("Choose to turn the check on or off.", "error")
        return redirect_to("console.integrations")
    enabled = form.enabled.data == "on"
    try:
        change_settings(_gate(), {"marketo_check_enabled": enabled}, actor=current_user.name, via=VIA_CONSOLE)
    except CheckStaysOff as refused:
        flash(f"The check stays off: {refused.message}", "error")
    else:
        flash("The check is on: every send is checked against Marketo." if enabled
              else "The check is off: every send is allowed.", "ok" if enabled else "error")
    return redirect_to("console.integrations")


@bp.post("/integrations/failure-mode")
def save_failure_mode():
    form = FailureModeForm()
    if form.validate():
        change_settings(_gate(), {"failure_mode": form.failure_mode.data}, actor=current_user.name, via=VIA_CONSOLE)
        flash(f"Failure policy saved: {FAILURE_MODE_LABELS[form.failure_mode.data]}.", "ok")
    else:
        flash("Choose deny or allow.", "error")
    return redirect_to("console.integrations")


# --- mirror -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadProgress:
    percent: int
    done: int
    total: int
    unit: str  # what is counted: export jobs, or batches of lead ids
    source: str
    seconds_left: float | None


def load_progress(mirror: dict) -> LoadProgress | None:
    """How far the first load has got, from the status's own progress (gateway.mirror_load.load_progress):
    steps done of all, and the time left. None when no load is running."""
    if mirror.get("load_status") != "loading":
        return None
    progress = mirror.get("load_progress")
    if not progress:  # the worker has not planned it yet
        return LoadProgress(0, 0, 0, "export jobs", "", None)
    unit = "steps (an export, then batches of 300 lead ids)" if progress["source"] == IDS_SOURCE else "export jobs"
    return LoadProgress(int(progress["percent"]), progress["jobs_done"], progress["jobs_total"], unit,
                        progress["source"], progress["eta_seconds"])


@bp.get("/mirror")
def mirror():
    status = gate_status()
    progress = load_progress(status["mirror"])
    return render_template("console/mirror.html", title="Mirror", status=status, mirror=status["mirror"],
                           progress=progress, refresh=progress is not None)


# --- check an address ---------------------------------------------------------------------------------------


def split_addresses(text: str) -> list[str]:
    """One a line or separated by commas (or semicolons, as mail clients write them); each once."""
    return list(dict.fromkeys(part.strip() for part in re.split(r"[\n,;]+", text) if part.strip()))


@bp.route("/check", methods=["GET", "POST"])
def check():
    form = CheckAddressesForm()
    answers, error = None, None
    if form.validate_on_submit():
        addresses = split_addresses(form.addresses.data)
        if len(addresses) > MAX_ADDRESSES:
            error = f"Check at most {MAX_ADDRESSES} addresses at once."
        else:
            request_ = CheckRequest(
                source=Source.WEB, workflow=Workflow.SINGLE_SEND, sender=None,
                messages=tuple(Message(id=None, recipients=(recipient(a, RecipientType.TO),)) for a in addresses),
            )
            outcome = _gate().checks.run(request_, dry_run=True)
            answers = [result.recipients[0] for result in outcome.results]
    elif request.method == "POST":
        error = "Type at least one address."
    return render_template("console/check.html", title="Check an address", form=form, answers=answers,
                           error=error, via=CHECKED_VIA_WORDS), 422 if error else 200


# --- audit --------------------------------------------------------------------------------------------------


@bp.get("/audit")
def audit():
    before = request.args.get("before", type=int)
    rows = _gate().store.audit.page(limit=AUDIT_PAGE + 1, before_id=before)
    page, more = rows[:AUDIT_PAGE], len(rows) > AUDIT_PAGE
    return render_template("console/audit.html", title="Audit", changes=page,
                           older=page[-1].id if more else None, paged=before is not None,
                           setting_names=SETTING_NAMES)
