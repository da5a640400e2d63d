"""Notification delivery edge: from "these events happened" to "apprise sent them".

targets (configured URLs as secret-free keys), routing (pure: events -> deliveries),
templates (sandboxed Jinja2 rendering), sender (apprise, one object per URL), console
(the ``console://`` scheme) and redact (secret masking for errors and logs).
"""
