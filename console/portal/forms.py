"""Portal forms: input checks only; the rules themselves live in services."""

from __future__ import annotations

import zoneinfo
from functools import lru_cache

from django import forms
from django.contrib.auth import password_validation

_COMMON_ZONES = [
    "UTC",
    "Asia/Shanghai",
    "Asia/Hong_Kong",
    "Asia/Taipei",
    "Asia/Tokyo",
    "Asia/Seoul",
    "Asia/Singapore",
    "Europe/London",
    "Europe/Berlin",
    "America/New_York",
    "America/Los_Angeles",
]


@lru_cache(maxsize=1)
def time_zone_names() -> tuple[str, ...]:
    # available_timezones() walks the tz database on disk (~100 ms+): once per process. The
    # page offers them through a <datalist>: a 600-option <select> costs ~100 ms to render.
    rest = sorted(zoneinfo.available_timezones() - set(_COMMON_ZONES))
    return tuple(_COMMON_ZONES) + tuple(rest)


class _PasswordPairMixin:
    def clean(self):
        data = super().clean()
        p1, p2 = data.get("password1"), data.get("password2")
        if p1 and p2 and p1 != p2:
            self.add_error("password2", "The two passwords differ.")
        elif p1:
            try:
                password_validation.validate_password(p1)
            except forms.ValidationError as exc:
                self.add_error("password1", exc)
        return data


class SignupForm(_PasswordPairMixin, forms.Form):
    organisation = forms.CharField(
        max_length=128, label="Organisation", help_text="Your company or project; you can invite teammates later."
    )
    username = forms.RegexField(
        regex=r"^[\w.@+-]+$",
        max_length=150,
        help_text="Letters, digits and @ . + - _ only.",
        error_messages={"invalid": "Use only letters, digits and @ . + - _."},
    )
    email = forms.EmailField(help_text="For password resets and invoices.")
    password1 = forms.CharField(
        label="Password",
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text="At least 8 characters.",
    )
    password2 = forms.CharField(
        label="Password again", widget=forms.PasswordInput(attrs={"autocomplete": "new-password"})
    )
    time_zone = forms.CharField(
        max_length=64,
        initial="UTC",
        widget=forms.TextInput(attrs={"list": "time-zones", "autocomplete": "off"}),
        help_text="Free plan tokens reset at midnight in this time zone (e.g. Asia/Shanghai).",
    )

    def clean_time_zone(self):
        value = self.cleaned_data["time_zone"].strip()
        if value not in time_zone_names():
            raise forms.ValidationError("Choose a time zone from the list, e.g. Asia/Shanghai or UTC.")
        return value


class InviteForm(forms.Form):
    email = forms.EmailField(label="E-mail of the person to invite")


class InviteAcceptForm(_PasswordPairMixin, forms.Form):
    username = forms.RegexField(
        regex=r"^[\w.@+-]+$", max_length=150, error_messages={"invalid": "Use only letters, digits and @ . + - _."}
    )
    password1 = forms.CharField(label="Password", widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}))
    password2 = forms.CharField(
        label="Password again", widget=forms.PasswordInput(attrs={"autocomplete": "new-password"})
    )


API_KEY_SCOPE_CHOICES = [
    ("synthesize", "Synthesize (jobs, speech and their audio)"),
    ("usage:read", "Read usage and quota"),
    ("voices:manage", "Manage voices"),
]


class ApiKeyForm(forms.Form):
    name = forms.CharField(
        max_length=64, label="Key name", help_text="Where it will be used, e.g. “production server”."
    )
    scopes = forms.MultipleChoiceField(
        choices=API_KEY_SCOPE_CHOICES,
        initial=[c for c, _ in API_KEY_SCOPE_CHOICES],
        widget=forms.CheckboxSelectMultiple,
        label="What it may do",
    )
    monthly_token_cap = forms.IntegerField(
        required=False,
        min_value=1,
        label="Monthly token cap",
        help_text="Optional: the key is refused (429 api_key_cap_reached) past this many tokens a month.",
    )


class AlertPolicyForm(forms.Form):
    allowance_percents = forms.CharField(
        max_length=40,
        label="Alert at these shares of the allowance (%)",
        help_text="Comma-separated whole percentages, e.g. 50, 80, 100 (at most 5).",
    )
    topup_below_tokens = forms.IntegerField(
        required=False, min_value=1, label="Alert when top-ups fall below (tokens)", help_text="Empty: no alert."
    )
    email_enabled = forms.BooleanField(required=False, label="Also e-mail the billing address")

    def clean_allowance_percents(self):
        raw = self.cleaned_data["allowance_percents"]
        try:
            values = [int(p) for p in raw.replace("%", "").split(",") if p.strip()]
        except ValueError:
            raise forms.ValidationError("Use whole numbers separated by commas, e.g. 80, 100.") from None
        return values


class WebhookEndpointForm(forms.Form):
    url = forms.URLField(max_length=500, label="Webhook URL", assume_scheme="https")


class VoiceForm(forms.Form):
    name = forms.CharField(max_length=64, label="Voice name")
    audio = forms.FileField(
        label="Prompt audio",
        help_text="3–15 s of one person speaking (3–10 s is best), ≥ 16 kHz, wav/flac/mp3/ogg, ≤ 10 MB.",
    )
    transcript = forms.CharField(
        max_length=500, required=False, label="What the audio says", help_text="Optional; improves the cloning."
    )
