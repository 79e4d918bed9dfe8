"""Which nodes a script names (checked on save) and which upstream outputs a call is given."""

from __future__ import annotations

from engine.code.references import offered_nodes, script_references


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


def test_names_built_at_run_time_are_not_references() -> None:
    assert script_references("const n = 'Orders'; $(n); $(`Ord${'ers'}`); $node[n]") == set()


def test_an_upstream_node_is_offered_when_its_name_is_in_the_text() -> None:
    code = "const source = 'Orders'; return $(source).all()"
    assert offered_nodes(code, frozenset({"Orders", "Customers", ""})) == {"Orders"}
