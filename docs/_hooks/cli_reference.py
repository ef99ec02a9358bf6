"""MkDocs hook: the CLI reference page is generated from the Typer app at build time.

``docs/reference/cli.md`` holds the marker below; it is replaced by Typer's own Markdown
(``typer ... utils docs``) for ``microsr.cli:app``, so the page cannot drift from the code.
"""

from __future__ import annotations

MARKER = "<!-- microsr-cli-reference -->"


def on_page_markdown(markdown, page, config, files):  # MkDocs hook signature
    if MARKER not in markdown:
        return markdown
    import click
    import typer.cli
    import typer.main

    from microsr.cli import app

    command = typer.main.get_command(app)
    ctx = click.Context(command, info_name="microsr")
    text = typer.cli.get_docs_for_click(obj=command, ctx=ctx, name="microsr", title="microsr")
    # the page has its own title: demote Typer's headings by one level
    text = "\n".join("#" + line if line.startswith("#") else line for line in text.splitlines())
    return markdown.replace(MARKER, text)
