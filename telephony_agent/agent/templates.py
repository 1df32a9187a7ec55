"""Brace templates: checked strictly when a settings file loads, substituted leniently per call.

Why not `str.format`: a template is written by whoever edits the settings file, but the
values come from the network (a caller id is whatever the far end put in From). With
`str.format` a template typo would fail in the middle of a call, and `{caller.__class__}`
style fields would reach into Python objects. Here the grammar is the same as
`str.format` (found with `string.Formatter().parse`, so `{{` and `}}` are literal
braces), but only bare names from a known list are allowed, every mistake is reported
at load time, and substitution is plain text concatenation: a value containing braces
is inserted as it is and never read as a template again.
"""

from __future__ import annotations

import string
from collections.abc import Collection, Mapping

_FORMATTER = string.Formatter()


def _braced(names: Collection[str]) -> str:
    return ", ".join("{" + name + "}" for name in names)


def template_problem(template: str, known: Collection[str]) -> str | None:
    """Why `template` cannot be used with the placeholders `known`, or None when it can.

    The answer is a fragment meant to follow the key name in a one-line error, e.g.
    "unknown placeholder {hotl}; known placeholders: {caller}, {dialled}". A field
    spanning lines (a stray brace in a multi-line string) is shown with ``\\n``.
    """
    problem = _problem(template, known)
    return None if problem is None else problem.replace("\r", "\\r").replace("\n", "\\n")


def _problem(template: str, known: Collection[str]) -> str | None:
    try:
        parts = list(_FORMATTER.parse(template))
    except ValueError as exc:
        return f"{exc} (write {{{{ or }}}} for a literal brace)"
    for _literal, field, spec, conversion in parts:
        if field is None:
            continue
        if field == "" or field.isdigit():
            return (
                f"positional placeholder {{{field}}} is not supported; "
                f"expected a name: {_braced(known)}"
            )
        if "." in field or "[" in field:
            return (
                f"placeholder {{{field}}} uses attribute or index access; "
                f"expected a bare name: {_braced(known)}"
            )
        if conversion is not None:
            return f"placeholder {{{field}!{conversion}}} has a conversion; expected {{{field}}}"
        if spec:
            return f"placeholder {{{field}:{spec}}} has a format spec; expected {{{field}}}"
        if field not in known:
            return f"unknown placeholder {{{field}}}; known placeholders: {_braced(known)}"
    return None


def fields_of(template: str) -> tuple[str, ...]:
    """The placeholder names a valid template uses, in order (repeats kept)."""
    try:
        return tuple(field for _, field, _, _ in _FORMATTER.parse(template) if field is not None)
    except ValueError:
        return ()


def substitute(template: str, values: Mapping[str, str]) -> str:
    """Fill `template` with `values`; never raises.

    Templates are checked at load time, so the lenient paths only matter for a template
    that bypassed that check: an unparsable one is returned unchanged, and a field that
    has no value is kept as written.
    """
    try:
        parts = list(_FORMATTER.parse(template))
    except ValueError:
        return template
    out: list[str] = []
    for literal, field, spec, conversion in parts:
        out.append(literal)
        if field is None:
            continue
        value = values.get(field)
        if value is not None and not spec and conversion is None:
            out.append(value)
            continue
        text = "{" + field
        if conversion is not None:
            text += "!" + conversion
        if spec:
            text += ":" + spec
        out.append(text + "}")
    return "".join(out)
