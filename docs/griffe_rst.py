r"""Griffe extension: the reStructuredText bits of the Google-style docstrings, as Markdown.

The docstrings of ``stadb_layers`` and ``stadb_reid`` use Google-style sections with Sphinx-style inline
markup (``:math:``, ``:class:``, ``.. math::``, ``Layout::`` literal blocks, simple tables). mkdocstrings
renders docstring text as Markdown, so this extension rewrites those constructs before the docstrings
are parsed:

* ``:math:`x``` -> ``$x$`` and ``.. math::`` blocks -> ``$$ ... $$`` (``aligned`` when the block has
  ``&`` or ``\\``), rendered by ``pymdownx.arithmatex`` and turned into MathML by ``docs/hooks.py``;
* ``:class:``, ``:func:``, ``:meth:``, ``:attr:``, ``:mod:``, ``:data:``, ``:exc:`` -> an *optional*
  cross-reference: a link when the target is rendered somewhere in the site, plain code otherwise
  (so a reference to ``torch.Generator`` never breaks ``mkdocs build --strict``);
* ``text::`` followed by an indented block -> ``text:`` (the indented block stays a code block);
* simple tables (``====  ====`` borders) -> Markdown tables.

It is loaded by the Python handler of mkdocstrings (``extensions:`` in ``mkdocs.yml``).
"""

from __future__ import annotations

import html
import re
from typing import Any

from griffe import Extension, Object

__all__ = ["RstToMarkdown", "rst_to_markdown"]

_ROLE_RE = re.compile(r":(?:py:)?(?P<role>math|class|func|meth|attr|mod|data|exc|obj):`(?P<body>[^`]+)`")
_MATH_DIRECTIVE_RE = re.compile(r"^(?P<indent>[ \t]*)\.\. math::[ \t]*(?P<inline>\S.*)?$")
_TABLE_BORDER_RE = re.compile(r"^[ \t]*=+(?:[ \t]+=+)+[ \t]*$")
_LITERAL_MARKER_RE = re.compile(r"(?<=\S)::[ \t]*$")


def _indent_of(line: str) -> int:
    return len(line) - len(line.lstrip())


def _math_blocks(lines: list[str]) -> list[str]:
    """Replace ``.. math::`` directives (and their indented body) by ``$$`` display blocks."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        match = _MATH_DIRECTIVE_RE.match(lines[i])
        if match is None:
            out.append(lines[i])
            i += 1
            continue
        indent = match["indent"]
        body: list[str] = [match["inline"]] if match["inline"] else []
        i += 1
        while i < len(lines) and (not lines[i].strip() or _indent_of(lines[i]) > len(indent)):
            body.append(lines[i].strip())
            i += 1
        while body and not body[-1]:
            body.pop()
        latex = "\n".join(line for line in body if line)
        if "&" in latex or "\\\\" in latex:
            latex = "\\begin{aligned}\n" + latex + "\n\\end{aligned}"
        if out and out[-1].strip():
            out.append("")
        out.extend([f"{indent}$$", *(f"{indent}{line}" for line in latex.splitlines()), f"{indent}$$", ""])
    return out


def _split_row(line: str, starts: list[int]) -> list[str]:
    cells = []
    for k, start in enumerate(starts):
        end = starts[k + 1] if k + 1 < len(starts) else None
        cells.append(line[start:end].strip())
    return cells


def _simple_tables(lines: list[str]) -> list[str]:
    """Convert RST simple tables (three ``=`` borders: top, under the header, bottom) to Markdown."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        if not _TABLE_BORDER_RE.match(lines[i]):
            out.append(lines[i])
            i += 1
            continue
        border = lines[i]
        borders = [j for j in range(i, len(lines)) if lines[j] == border]
        if len(borders) < 3:
            out.append(lines[i])
            i += 1
            continue
        top, header_end, bottom = borders[0], borders[1], borders[2]
        indent = border[: _indent_of(border)]
        starts = [m.start() for m in re.finditer(r"=+", border)]
        rows: list[list[str]] = []
        for j in [*range(top + 1, header_end), *range(header_end + 1, bottom)]:
            if not lines[j].strip():
                continue
            cells = _split_row(lines[j], starts)
            if rows and not cells[0] and j > header_end + 1:
                rows[-1] = [f"{a} {b}".strip() for a, b in zip(rows[-1], cells, strict=True)]
            else:
                rows.append(cells)
        if out and out[-1].strip():
            out.append("")
        for k, row in enumerate(rows):
            out.append(indent + "| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
            if k == 0:
                out.append(indent + "|" + "|".join(" --- " for _ in row) + "|")
        out.append("")
        i = bottom + 1
    return out


def _resolve(target: str, obj: Object | None) -> str:
    """Dotted path of a role target, relative names looked up around ``obj``."""
    if obj is None or "." in target:
        return target
    scopes: list[Any] = []
    node: Any = obj
    while node is not None:
        scopes.append(node)
        node = node.parent
    for scope in scopes:
        members = getattr(scope, "members", {})
        if target in members:
            member = members[target]
            return str(getattr(member, "target_path", None) or member.path)
    return target


def _role(match: re.Match[str], obj: Object | None) -> str:
    role, body = match["role"], match["body"]
    if role == "math":
        return f"${body}$"
    explicit = re.fullmatch(r"(?P<title>.+?)\s*<(?P<target>[^>]+)>", body)
    if explicit:
        title, target = explicit["title"], explicit["target"]
    else:
        target = body.lstrip("~!")
        title = target.rsplit(".", 1)[-1] if body.startswith("~") else target
    if role in ("func", "meth") and not title.endswith(")"):
        title += "()"
    identifier = _resolve(target.lstrip("~!"), obj)
    code = f"<code>{html.escape(title)}</code>"
    return f'<autoref identifier="{html.escape(identifier)}" optional>{code}</autoref>'


def rst_to_markdown(text: str, obj: Object | None = None) -> str:
    """Rewrite the reStructuredText constructs of a docstring as Markdown (see the module docstring)."""
    lines = _simple_tables(_math_blocks(text.splitlines()))
    lines = [
        _LITERAL_MARKER_RE.sub(":", line) if not line.lstrip().startswith("..") else line for line in lines
    ]
    return _ROLE_RE.sub(lambda m: _role(m, obj), "\n".join(lines))


class RstToMarkdown(Extension):
    """Rewrite every docstring once the object tree is complete (relative references resolve then)."""

    def on_object(self, *, obj: Object, **kwargs: Any) -> None:
        """Convert ``obj``'s docstring in place."""
        if obj.docstring is not None:
            obj.docstring.value = rst_to_markdown(obj.docstring.value, obj)

    def on_package(self, *, pkg: Object, **kwargs: Any) -> None:
        """Convert the docstring of the top-level package, which ``on_object`` does not visit."""
        self.on_object(obj=pkg)
