"""The blocked-send log in the console: filtered, paged newest first, charted per day, exported as CSV."""
from __future__ import annotations

from datetime import date, timedelta

from flask import Response, current_app, render_template, request, stream_with_context, url_for

from gateway.console import bp
from gateway.console.chart import per_day_chart
from gateway.console.forms import BlockedSendsFilterForm
from gateway.reports import blocked_sends_csv
from gateway.store import BlockedSendFilter, utcnow

PAGE = 25
CHART_DAYS = 30  # shown when the filter names no dates
MAX_CHART_DAYS = 92


def _filters() -> tuple[BlockedSendsFilterForm, BlockedSendFilter | None]:
    """The filter form from the query string, and the filter it makes (None when a field is wrong)."""
    form = BlockedSendsFilterForm(request.args)
    if not form.validate():
        return form, None
    return form, BlockedSendFilter(
        recipient=form.recipient.data or None, sender=form.sender.data or None, source=form.source.data or None,
        workflow=form.workflow.data or None, since=form.since.data, until=form.until.data,
    )


def _filter_args() -> dict[str, str]:
    return {name: value for name, value in request.args.items() if name != "before" and value}


def chart_range(where: BlockedSendFilter, today: date) -> tuple[date, date]:
    last = min(where.until or today, today)
    first = where.since or last - timedelta(days=CHART_DAYS - 1)
    first = max(first, last - timedelta(days=MAX_CHART_DAYS - 1))
    return min(first, last), last


@bp.get("/blocked-sends")
def blocked_sends():
    form, where = _filters()
    rows, older, chart = [], None, None
    if where is not None:
        store = current_app.extensions["gate"].store
        before = request.args.get("before", type=int)
        found = store.blocked_sends.page(limit=PAGE + 1, before_id=before, where=where)
        rows = found[:PAGE]
        if len(found) > PAGE:
            older = url_for("console.blocked_sends", before=rows[-1].id, **_filter_args())
        first, last = chart_range(where, utcnow().date())
        chart = per_day_chart(store.blocked_sends.per_day_by_reason(first, where=where), first, last)
    filtered = bool(_filter_args())
    return render_template(
        "console/blocked_sends.html", title="Blocked sends", form=form, rows=rows, older=older, chart=chart,
        newest=url_for("console.blocked_sends", **_filter_args()) if request.args.get("before") else None,
        export=url_for("console.blocked_sends_csv_export", **_filter_args()), filtered=filtered,
    ), 200 if where is not None else 422


@bp.get("/blocked-sends.csv")
def blocked_sends_csv_export():
    form, where = _filters()
    if where is None:
        return render_template("console/refused.html", title="Export refused",
                               reason="The filter is not valid; correct it on the Blocked sends page."), 422
    rows = current_app.extensions["gate"].store.blocked_sends.iterate(where=where)
    return Response(stream_with_context(blocked_sends_csv(rows)), mimetype="text/csv",
                    headers={"Content-Disposition": "attachment; filename=blocked-sends.csv"})
