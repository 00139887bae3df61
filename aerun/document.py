"""A small document model written out twice: as Markdown and as a self-contained HTML page.

The report builds a `Document` of headings, paragraphs, tables and figures; the
two renderings carry the same content, with figure paths relative to the page.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any, Sequence


def cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


@dataclass
class Document:
    title: str
    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def heading(self, text: str, level: int = 2) -> None:
        self.blocks.append(("heading", (level, text)))

    def text(self, text: Any) -> None:
        """A paragraph: a string, or an object rendered (str) when the document is, after every part is known."""
        self.blocks.append(("text", text))

    def items(self, items: Sequence[Any]) -> None:
        """A bulleted list of strings or deferred sentences (aerun.claims), rendered with the document."""
        if items:
            self.blocks.append(("items", list(items)))

    def table(self, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self.blocks.append(("table", ([str(h) for h in header], [[cell(c) for c in row] for row in rows])))

    def figure(self, path: str, caption: str) -> None:
        self.blocks.append(("figure", (path, caption)))

    def tables(self) -> list[dict[str, Any]]:
        """Every table as {"section": the heading above it, "rows": [{column: cell}, ...]}, the same cells as shown."""
        out, section = [], self.title
        for kind, value in self.blocks:
            if kind == "heading":
                section = value[1]
            elif kind == "table":
                header, rows = value
                out.append({"section": section, "rows": [dict(zip(header, row)) for row in rows]})
        return out

    # ------------------------------------------------------------------ renderings

    def markdown(self) -> str:
        out = [f"# {self.title}", ""]
        for kind, value in self.blocks:
            if kind == "heading":
                level, text = value
                out += ["#" * level + " " + text, ""]
            elif kind == "text":
                out += [str(value), ""]
            elif kind == "items":
                out += [f"- {item}" for item in value] + [""]
            elif kind == "table":
                header, rows = value
                out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                out += ["| " + " | ".join(row) + " |" for row in rows] + [""]
            elif kind == "figure":
                path, caption = value
                out += [f"![{caption}]({path})", "", f"*{caption}*", ""]
        return "\n".join(out)

    def html(self) -> str:
        e = html.escape
        body = [f"<h1>{e(self.title)}</h1>"]
        for kind, value in self.blocks:
            if kind == "heading":
                level, text = value
                anchor = "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")
                body.append(f'<h{level} id="{e(anchor)}">{e(text)}</h{level}>')
            elif kind == "text":
                body.append(f"<p>{_inline(str(value))}</p>")
            elif kind == "items":
                body.append("<ul>" + "".join(f"<li>{_inline(str(i))}</li>" for i in value) + "</ul>")
            elif kind == "table":
                header, rows = value
                head = "".join(f"<th>{e(h)}</th>" for h in header)
                lines = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in rows)
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{lines}</tbody></table>")
            elif kind == "figure":
                path, caption = value
                body.append(f'<figure><a href="{e(path)}"><img src="{e(path)}" alt="{e(caption)}"></a>'
                            f"<figcaption>{e(caption)}</figcaption></figure>")
        return PAGE.format(title=e(self.title), body="\n".join(body))


def _inline(text: str) -> str:
    """HTML of a line of Markdown-ish text: `code` spans and **bold**, everything else escaped."""
    parts = html.escape(text).split("`")
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append(f"<code>{part}</code>")
        else:
            bold = part.split("**")
            out.append("".join(f"<b>{b}</b>" if j % 2 else b for j, b in enumerate(bold)))
    return "".join(out)


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; line-height: 1.45; color: #222; }}
h1 {{ border-bottom: 2px solid #444; }}
h2 {{ border-bottom: 1px solid #bbb; margin-top: 2.2em; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }}
th {{ background: #f0f0f0; }}
td:first-child, th:first-child {{ text-align: left; }}
figure {{ margin: 1.2em 0; }}
img {{ max-width: 100%; border: 1px solid #ddd; }}
figcaption {{ font-size: 0.9em; color: #555; }}
code {{ background: #f4f4f4; padding: 0 0.2em; }}
</style>
</head>
<body>
{body}
</body>
</html>
"""
