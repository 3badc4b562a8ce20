"""The console's forms (Flask-WTF): every form that changes something carries a CSRF token."""
from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import DateField, HiddenField, PasswordField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Optional

from gateway.config import FAILURE_MODES
from gateway.domain import SOURCES, WORKFLOWS

MAX_ADDRESSES = 50
FAILURE_MODE_LABELS = {"deny": "Deny: hold the send (unverified)", "allow": "Allow: let the send go (unverified)"}


class SignInForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=100)],
                       render_kw={"autocomplete": "username", "autocapitalize": "none", "spellcheck": "false"})
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1000)],
                             render_kw={"autocomplete": "current-password"})
    next = HiddenField()


class ActionForm(FlaskForm):
    """A button that does one thing (test the connection, sign out): only the CSRF token is sent."""


class CheckSwitchForm(FlaskForm):
    enabled = HiddenField(validators=[DataRequired()])  # "on" or "off": what the button asks for


class FailureModeForm(FlaskForm):
    failure_mode = SelectField(
        "When Marketo cannot answer in time",
        choices=[SelectChoice(mode, FAILURE_MODE_LABELS[mode]) for mode in FAILURE_MODES],
        validators=[DataRequired()],
    )


class CheckAddressesForm(FlaskForm):
    addresses = TextAreaField("Addresses, one a line or separated by commas",
                              validators=[DataRequired(), Length(max=MAX_ADDRESSES * 330)],
                              render_kw={"rows": 5, "autocapitalize": "none", "spellcheck": "false"})


def _any(values) -> list[SelectChoice]:
    return [SelectChoice("", "Any")] + [SelectChoice(value, value.replace("_", " ")) for value in values]


class BlockedSendsFilterForm(FlaskForm):
    """A GET form: it only narrows what is shown and changes nothing, so it carries no CSRF token."""

    class Meta:
        csrf = False

    recipient = StringField("Recipient", validators=[Optional(), Length(max=320)])
    sender = StringField("Sender", validators=[Optional(), Length(max=320)])
    source = SelectField("Source", choices=_any(SOURCES), validators=[Optional()])
    workflow = SelectField("Workflow", choices=_any(WORKFLOWS), validators=[Optional()])
    since = DateField("From", validators=[Optional()])
    until = DateField("To", validators=[Optional()])
