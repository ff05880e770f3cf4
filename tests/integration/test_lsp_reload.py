"""fp-lsp's reload from the editor's buffer: the buffer's text (unsaved edits included, no file
written) goes into the running process and changes what it does; a refusal is an Error
diagnostic on the right line of the buffer and changes nothing; reloadOnSave reloads the
functions a save changed; a monitored function's lens shows its figures before and since the
reload. Real fp-lsp over pipes, real targets (tests/targets/lsp_service.py) on every CPython."""

import pytest
from lspclient import LspError
from test_lsp import DEFS, SERVICE, _attached, _titles, lsp  # noqa: F401  (the fixture, the target kind)

from conftest import wait_until

with open(SERVICE) as _f:
    SOURCE = _f.read()
LINES = SOURCE.splitlines()
# price("apple", 2) is {"apple": 3}[...] * 2 = 6 in the file; the tests edit the 3.
BASE_LINE = [i for i, line in enumerate(LINES) if 'base = {"apple": 3' in line][0]
BASE_COL = LINES[BASE_LINE].index('"apple": 3') + len('"apple": ')


def _edit_base(lsp, uri, version, text):
    """Replaces the 3 of price's "apple": 3 in the buffer with text."""
    lsp.change(
        uri,
        version,
        [
            {
                "range": {
                    "start": {"line": BASE_LINE, "character": BASE_COL},
                    "end": {"line": BASE_LINE, "character": BASE_COL + 1},
                },
                "text": text,
            }
        ],
    )


def _prices_after(t, n):
    """The prices the target reports from its n-th progress line on."""
    return t.prices()[n:]


def test_reload_of_the_edited_buffer_changes_the_process(spawn, lsp):
    t = spawn("lsp_service")
    uri = _attached(lsp, t)
    wait_until(lambda: "6" in t.prices(), 15, "the target's first prices")
    _edit_base(lsp, uri, 2, "7")  # unsaved: the file on disk still says 3
    r = lsp.execute("fp.reload", {"uri": uri, "function": "price"})
    assert r["function"] == "price", r
    assert [x["pid"] for x in r["reloaded"]] == [t.pid] and r["reloaded"][0]["applied"], r
    seen = len(t.prices())
    wait_until(lambda: "14" in _prices_after(t, seen), 15, "the target computing with the new code")
    # Every call from then on runs the new code (the function object kept its identity).
    wait_until(lambda: len(_prices_after(t, seen)) >= 5, 15, "more ticks")
    later = _prices_after(t, seen)
    assert set(later[later.index("14") :]) == {"14"}, later
    assert any(
        "reloaded price into process %d" % t.pid in p.get("message", "")
        for m, p in lsp.notifications
        if m in ("window/showMessage", "window/logMessage")
    ), lsp.describe()
    # Reloading the same text again is no change.
    again = lsp.execute("fp.reload", {"uri": uri, "function": "price"})
    assert again["reloaded"][0]["unchanged"] and not again["reloaded"][0]["applied"], again
    t.assert_healthy()


def test_a_refused_reload_is_an_error_on_its_line_and_changes_nothing(spawn, lsp):
    t = spawn("lsp_service")
    uri = _attached(lsp, t)
    wait_until(lambda: "6" in t.prices(), 15, "the target's first prices")
    _edit_base(lsp, uri, 2, "3 +")  # a syntax error on that line
    with pytest.raises(LspError) as e:
        lsp.execute("fp.reload", {"uri": uri, "function": "price"})
    assert "price" in str(e.value) or "syntax" in str(e.value).lower(), e.value.error
    errors = lsp.wait_for(
        lambda: [d for d in lsp.diagnostics.get(uri, []) if d["severity"] == 1], 15, "the refusal's Error diagnostic"
    )
    assert errors[0]["range"]["start"]["line"] == BASE_LINE, (errors, BASE_LINE)
    assert "reload refused in process %d" % t.pid in errors[0]["message"], errors
    # The process still runs the code it had.
    seen = len(t.prices())
    wait_until(lambda: len(_prices_after(t, seen)) >= 5, 15, "more ticks")
    assert set(_prices_after(t, seen)) == {"6"}, t.prices()[-10:]
    # Fixing the buffer and reloading clears the error.
    lsp.change(uri, 3, [{"text": SOURCE}])  # the whole text again, as the file has it
    r = lsp.execute("fp.reload", {"uri": uri, "function": "price"})
    assert r["reloaded"][0]["unchanged"], r
    lsp.wait_for(
        lambda: not [d for d in lsp.diagnostics.get(uri, []) if d["severity"] == 1], 15, "the Error diagnostic cleared"
    )
    t.assert_healthy()


def test_reload_on_save_and_the_lens_before_and_since(spawn, lsp):
    t = spawn("lsp_service")
    lsp.initialize(options={"reloadOnSave": True})
    r = lsp.execute("fp.attach", {"pid": t.pid})
    assert [a["pid"] for a in r["attached"]] == [t.pid], r
    uri = lsp.open(SERVICE)
    lsp.execute("fp.monitor", {"uri": uri, "function": "price"})
    lsp.lenses_when(uri, lambda ls: any("calls" in x for x in _titles(ls, "price")), 15, "price's live lens")
    _edit_base(lsp, uri, 2, "7")
    lsp.notify("textDocument/didSave", {"textDocument": {"uri": uri}})
    seen = len(t.prices())
    wait_until(lambda: "14" in _prices_after(t, seen), 15, "the saved function running in the process")
    lenses = lsp.lenses_when(
        uri,
        lambda ls: any("since reload" in x for x in _titles(ls, "price")),
        15,
        "price's lens before and since the reload",
    )
    title = [x for x in _titles(lenses, "price") if "since reload" in x][0]
    assert "\u2192" in title, title
    # Functions the save did not change were not reloaded.
    assert not any(
        "reloaded Cart.add" in p.get("message", "")
        for m, p in lsp.notifications
        if m in ("window/showMessage", "window/logMessage")
    )
    t.assert_healthy()
