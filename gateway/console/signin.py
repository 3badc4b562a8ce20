"""Signing in and out of the console."""
from __future__ import annotations

from flask import current_app, flash, redirect, render_template, request, session
from flask_login import current_user, login_user, logout_user

from gateway.console import bp, local_target, redirect_to
from gateway.console.accounts import ConsoleUser, sign_in as check_sign_in
from gateway.console.forms import SignInForm


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in():
    if current_user.is_authenticated:
        return redirect_to("console.integrations")
    form = SignInForm(next=request.args.get("next", ""))
    error = None
    status = 200
    if form.validate_on_submit():
        outcome = check_sign_in(current_app.extensions["gate"].store, form.name.data, form.password.data)
        if outcome.admin is not None:
            session.clear()  # a fresh session for the signed-in admin: nothing carried over from before
            session.permanent = True
            login_user(ConsoleUser(outcome.admin))
            return redirect(local_target(form.next.data), code=303)
        error, status = outcome.error, 401
    elif request.method == "POST":
        status = 422
    return render_template("console/sign_in.html", title="Sign in", form=form, error=error), status


@bp.post("/sign-out")
def sign_out():
    logout_user()
    session.clear()
    flash("Signed out.", "ok")
    return redirect_to("console.sign_in")
