"""Turning an exception into text that is safe to keep: message, traceback, trace.

Every helper survives hostile errors (a ``__str__`` that raises, cyclic ``__context__``, huge
groups) because the failure being described is exactly when nothing else may break. Every text
kept goes through :func:`redact_text` (whether or not inputs are captured): error text is where
a connection string's password or a config's ``api_key`` ends up.
Threading contract: pure functions, safe from any thread.
"""

from __future__ import annotations

import re
import traceback
from typing import Final

from tracekit.capture.redact import REDACTED, is_secret_key

__all__ = [
    "MAX_CHAIN",
    "MAX_LINKS",
    "qualname",
    "redact_text",
    "safe_message",
    "safe_traceback",
    "trace_text",
]

#: Links of ``__cause__``/``__context__`` followed from one error before giving up.
MAX_CHAIN: Final = 32
#: Links described in all, across the members of exception groups, so a group of groups of
#: thousands of failures still gives a bounded record.
MAX_LINKS: Final = 256


#: Text read past a cap before cutting, so a secret that straddles the cut is still recognized.
_REDACT_MARGIN: Final = 4096

# scheme://user:PASSWORD@host: the password runs to the last "@" before the path (an unescaped
# "@" in a password is common); the scheme is bounded so scanning stays linear.
_URL_USERINFO: Final = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]{0,31}://[^\s/?#@:]*:)[^\s/?#]*(?=@)")
# A bearer token anywhere ("Bearer" is rare in prose; "Basic" is not, so it needs a key).
_BEARER: Final = re.compile(r"\b((?i:bearer)\s+)[A-Za-z0-9._~+/-]{6,}=*")
# key=value, key: value, 'key': 'value', "key": "value" (a value may start with an auth scheme);
# the key rule of captured payloads decides which keys are secret.
_KEY_VALUE: Final = re.compile(
    r"""(?<![A-Za-z0-9_.-])([A-Za-z_][A-Za-z0-9_.-]{0,63})(["']?\s{0,3}[:=]\s{0,3})"""
    r"""((?i:bearer|basic|digest|negotiate|token)\s+(?=[^\s"'&,;)}\]]))?"""
    r"""("[^"\n]{0,512}"|'[^'\n]{0,512}'|[^\s"'&,;)}\]=][^\s"'&,;)}\]]{0,511})"""
)


def _mask_value(match: re.Match[str]) -> str:
    key, sep, scheme, value = match.group(1), match.group(2), match.group(3) or "", match.group(4)
    if not is_secret_key(key) or value.strip("\"'").startswith(REDACTED[:-1]):
        return match.group(0)
    quote = value[0] if value[:1] in ("'", '"') and value[-1:] == value[:1] and len(value) > 1 else ""
    return f"{key}{sep}{scheme}{quote}{REDACTED}{quote}"


def redact_text(text: str) -> str:
    """``text`` with credentials masked: the password of URL userinfo (the host is kept), a
    ``Bearer`` token, and the value after a denylisted key (``password=``, ``"api_key": ...``,
    ``Authorization: Basic ...``; the key rule of captured payloads). Idempotent.
    """
    if "://" in text:
        text = _URL_USERINFO.sub(rf"\1{REDACTED}", text)
    text = _BEARER.sub(rf"\1{REDACTED}", text)
    if ":" in text or "=" in text:
        text = _KEY_VALUE.sub(_mask_value, text)
    return text


def qualname(error: BaseException) -> str:
    """``module.QualName`` of the error's type (``QualName`` alone for built-ins)."""
    t = type(error)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def cap_text(text: str, cap: int) -> str:
    """``text`` redacted and cut to ``cap`` characters (the start is kept)."""
    if len(text) <= cap:
        return redact_text(text)
    kept = redact_text(text[: cap + _REDACT_MARGIN])[:cap]
    return kept + f"... [truncated: {len(text)} characters in all]"


def safe_message(error: BaseException, cap: int) -> str:
    """``str(error)``, or a note saying that it raised; redacted and capped."""
    try:
        text = str(error)
    except Exception as exc:
        text = f"<str() of {type(error).__qualname__} raised {type(exc).__qualname__}>"
    return cap_text(text, cap)


def trace_text(error: BaseException, cap: int) -> str | None:
    """The text of a :class:`~tracekit.errors.Traceable` error, or why it could not be had."""
    try:
        fmt = getattr(error, "trace_format", None)
    except Exception as exc:
        return f"<reading trace_format raised {type(exc).__qualname__}>"
    if not callable(fmt):
        return None
    try:
        text = fmt()
        if not isinstance(text, str):
            text = f"<trace_format() returned {type(text).__qualname__}, not str>: {text!r}"
        return cap_text(text, cap)
    except Exception as exc:
        return f"<trace_format() raised {type(exc).__qualname__}: {safe_message(exc, 200)}>"


def safe_traceback(error: BaseException, cap: int) -> str:
    """The traceback as Python prints it (groups included), redacted; the end is kept when long."""
    try:
        text = "".join(traceback.format_exception(error))
    except Exception as exc:
        text = f"<formatting the traceback raised {type(exc).__qualname__}>"
    if len(text) <= cap:
        return redact_text(text)
    # Keep the end: the innermost frames and the final error line say the most.
    kept = redact_text(text[-(cap + _REDACT_MARGIN):])[-cap:]
    return f"[truncated: {len(text)} characters in all]...\n" + kept
