"""Which nodes a script names (checked on save) and which upstream outputs a call is given:
literal names as JavaScript reads them, and every upstream node when a reference cannot be
read from the source."""

from __future__ import annotations

import time

import pytest

from engine.code.references import offered_nodes, scan, script_references

UPSTREAM = frozenset({"Orders", "Customers", "Config", 'Say "hi"', "Back`tick", "Café", ""})


def test_literal_references_in_every_spelling() -> None:
    code = """
      const a = $("Orders").all();
      const b = $node['Customers'].json;   // and $( 'In a comment' ) counts too
      const c = $node.Config.first();
      const d = $(`Back ticks`).item;
      const e = $("Say \\"hi\\"").first();
    """
    assert script_references(code) == {
        "Orders",
        "Customers",
        "In a comment",
        "Config",
        "Back ticks",
        'Say "hi"',
    }


def test_whitespace_and_newlines_inside_a_reference() -> None:
    code = '$(\n  "Orders"\n).all(); $node [ "Customers" ]; $node\n  .Config; $?.("Café")'
    assert script_references(code) == {"Orders", "Customers", "Config", "Café"}
    assert offered_nodes(code, UPSTREAM) == {"Orders", "Customers", "Config", "Café"}


@pytest.mark.parametrize(
    ("code", "name"),
    [
        ('$("Say \\"hi\\"")', 'Say "hi"'),
        ("$('\\u004Frders')", "Orders"),
        ("$('\\u{4F}rders')", "Orders"),
        ("$('\\x4Frders')", "Orders"),
        ("$node.Ord\\u0065rs", "Orders"),
        ("$node['Caf\\u00e9']", "Café"),
        ("$(`Back\\`tick`)", "Back`tick"),
        ("$('Ord\\\ners')", "Orders"),
    ],
)
def test_escapes_are_read_as_javascript_reads_them(code: str, name: str) -> None:
    assert script_references(code) == {name}
    assert offered_nodes(code, UPSTREAM) == {name}


@pytest.mark.parametrize(
    "code",
    [
        "const n = 'Orders'; return $(n).all()",
        "return $($json.source).all()",
        "return $(`Ord${'ers'}`).all()",
        "return $('Ord' + 'ers').all()",
        "return $node[$json.source].json",
        "const { Orders } = $node; return Orders.all()",
        "const lookup = $; return lookup('Orders').all()",
        "return [$].map((f) => f('Orders'))",
        "return $.call(null, 'Orders').all()",
        "return arguments[2]('Orders').all()",
        "return \\u0024('Ord' + 'ers').all()",
        "return $no\\u0064e[$json.source].json",
        "return $ /* a comment */ ('Orders').all()",
        "return $//\n('Ord' + 'ers').all()",
        "return $node?.[$json.source]",
    ],
)
def test_a_reference_that_cannot_be_read_offers_every_upstream_node(code: str) -> None:
    assert offered_nodes(code, UPSTREAM) == UPSTREAM


@pytest.mark.parametrize(
    "code",
    [
        "return [{json: {price: '$' + $json.price, note: \"in US$, $'s\"}}]",
        "return [{json: {text: `${$json.a} and $${$json.b}`}}]",
        "return [{json: {dollars: /^\\d+$/.test($json.s), end: /x$|y$/.source}}]",
        "return $input.all().map((item) => ({json: {...item.json, $id: 1}}))",
        # A tagged template: `$` is given an array, and refuses it.
        "return $`Orders`",
    ],
)
def test_a_dollar_sign_that_reaches_no_node_offers_nothing(code: str) -> None:
    assert offered_nodes(code, UPSTREAM) == set()


def test_a_name_that_is_not_upstream_is_not_offered() -> None:
    # The save check refuses it; at run time the script's lookup fails, naming it.
    assert offered_nodes("return $('Elsewhere').all()", UPSTREAM) == set()
    assert script_references("return $('Elsewhere').all()") == {"Elsewhere"}


@pytest.mark.parametrize(
    "code",
    [
        '$("' * 80_000,
        "$('" * 80_000,
        "$(`" * 80_000,
        "$node[" * 40_000 + "'",
        "$(" + " " * 250_000,
        "$node." + "a" * 250_000,
        "\\u" * 120_000,
        "a" * 250_000 + "\\u0024",
        "$node['" + "\\'" * 120_000,
        "$" * 250_000,
    ],
    ids=[
        "unclosed-double",
        "unclosed-single",
        "unclosed-template",
        "unclosed-index",
        "spaces",
        "long-member",
        "escapes",
        "long-word",
        "escaped-quotes",
        "dollars",
    ],
)
def test_scanning_the_largest_script_stays_fast(code: str) -> None:
    upstream = frozenset(f"Node number {index}" for index in range(2000))
    started = time.perf_counter()
    script_references(code)
    offered_nodes(code, upstream)
    assert time.perf_counter() - started < 0.25


@pytest.mark.parametrize(
    "code",
    [
        "x = 1;\n" * 40_000,
        "const y = $json.a + $('Orders').first().json.b + $node['Customers'].json.c;\n" * 3_000,
        "return $input.all().map((i) => ({json: {t: `${i.json.a} ${arguments.length}`}}));\n"
        * 3_000,
    ],
    ids=["no-references", "6000-references", "templates"],
)
def test_a_256_kb_script_is_read_in_milliseconds(code: str) -> None:
    started = time.perf_counter()
    scan.__wrapped__(code)  # not the kept result
    assert time.perf_counter() - started < 0.05


def test_a_large_script_is_scanned_once_per_call_at_most_in_microseconds() -> None:
    code = "const x = $('Orders').all();\n" + "const y = 'abc' + 1;\n" * 12_000
    upstream = frozenset(f"Node number {index}" for index in range(2000)) | {"Orders"}
    assert offered_nodes(code, upstream) == {"Orders"}
    started = time.perf_counter()
    for _ in range(100):
        offered_nodes(code, upstream)
    assert (time.perf_counter() - started) / 100 < 0.0005
