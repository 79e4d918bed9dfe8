"""docs/api.md prints the role table exactly as the code decides (issue 18)."""

from __future__ import annotations

from pathlib import Path

from resolvers.permissions import markdown_table

API_DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
START = "<!-- roles table: printed by resolvers.permissions.markdown_table() -->\n"
END = "<!-- end of roles table -->"


def test_the_page_prints_the_table_of_the_code() -> None:
    page = API_DOC.read_text()
    printed = page[page.index(START) + len(START) : page.index(END)]
    assert printed == markdown_table(), (
        "regenerate with: python -c 'from resolvers.permissions import markdown_table; "
        'print(markdown_table(), end="")\''
    )
