"""Sphinx tweaks for the tlteach book (loaded by _config.yml's sphinx.local_extensions).

sphinx-thebe 0.3 (which Jupyter Book 1 always loads) adds its inline configuration script twice under
Sphinx 7, and the second copy throws "Identifier 'THEBE_JS_URL' has already been declared" on every page.
We drop repeated scripts from each page, keeping the first.
"""

from __future__ import annotations


def _script_key(script) -> tuple:
    filename = getattr(script, "filename", script) or ""  # an inline script: None or ""
    attributes = getattr(script, "attributes", {}) or {}
    return (str(filename), tuple(sorted((k, str(v)) for k, v in attributes.items())))


def dedupe_scripts(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for script in scripts:
        key = _script_key(script)
        if key not in seen:
            seen.add(key)
            unique.append(script)
    scripts[:] = unique  # in place: later handlers add this page's scripts to the same list


def setup(app):
    # early: Sphinx stops calling html-page-context handlers at the first that returns a value
    app.connect("html-page-context", dedupe_scripts, priority=100)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
