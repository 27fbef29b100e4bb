"""MkDocs hooks of the documentation site (listed under ``hooks:`` in ``mkdocs.yml``).

Three jobs, all at build time, so the built site needs no network and no JavaScript for math:

* **Figures.** :func:`on_files` runs ``docs/gen_figures.py`` (cached in the system temp folder, keyed by
  the sources it depends on) and serves the PNGs as ``assets/generated/<name>.png``. Nothing is written
  into the repository.
* **Results files.** A line ``<!-- results: PATH -->`` in a page is replaced by the Markdown file ``PATH``
  (relative to the repository root), with its headings moved one level down, its images and data files
  served under ``results/PATH_DIR/``, and links to other repository files shown as code. A results file
  that is not there yet gives a visible "pending" note instead of a broken build. The results files are
  written by the benchmarks and the trainer, never copied by hand, so the pages stay in sync.
* **Math.** ``pymdownx.arithmatex`` (generic mode) protects ``$...$`` and ``$$...$$`` from Markdown;
  :func:`on_page_content` converts each formula to MathML with ``latex2mathml``, which browsers render
  natively. A formula that does not convert cleanly is logged as a warning, so ``mkdocs build
  --strict`` fails and names it.
"""

from __future__ import annotations

import hashlib
import html
import importlib.util
import logging
import posixpath
import re
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

from latex2mathml.converter import convert as latex_to_mathml
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

log = logging.getLogger("mkdocs.hooks.stadb")

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
GENERATED_URI = "assets/generated"
RESULTS_URI = "results"
ASSET_SUFFIXES = frozenset({".png", ".svg", ".jpg", ".jpeg", ".gif", ".webp", ".csv", ".json", ".txt"})

_RESULTS_MARKER_RE = re.compile(r"^<!-- results: (?P<path>\S+) -->[ \t]*$", re.MULTILINE)
_LINK_RE = re.compile(r"(?P<bang>!?)\[(?P<text>[^\]]*)\]\((?P<target>[^)\s]+)(?P<title>\s+\"[^\"]*\")?\)")
_HEADING_RE = re.compile(r"^(#{1,6}) ", re.MULTILINE)
_FENCE_RE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
_INLINE_MATH_RE = re.compile(r'<span class="arithmatex">\\\((?P<tex>.*?)\\\)</span>', re.DOTALL)
_BLOCK_MATH_RE = re.compile(r'<div class="arithmatex">\\\[(?P<tex>.*?)\\\]</div>', re.DOTALL)


# ------------------------------------------------------------------------------------------ figures
def _load_figure_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("stadb_docs_gen_figures", DOCS / "gen_figures.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _figure_cache_dir() -> Path:
    """A cache folder named after the hash of every source the figures depend on."""
    import torch

    digest = hashlib.sha256(torch.__version__.encode())
    sources = [
        DOCS / "gen_figures.py",
        *sorted((ROOT / "stadb_layers").rglob("*.py")),
        *sorted((ROOT / "examples" / "stadb_reid" / "visualization").glob("*.py")),
        *sorted((ROOT / "examples" / "stadb_reid" / "results").glob("*.json")),
        *sorted((ROOT / "benchmarks").glob("*.py")),
        *sorted((ROOT / "benchmarks" / "results").glob("*.json")),
    ]
    for path in sources:
        digest.update(path.read_bytes())
    return Path(tempfile.gettempdir()) / "stadb-docs-figures" / digest.hexdigest()[:16]


def _figures() -> list[Path]:
    cache = _figure_cache_dir()
    done = cache / "done.txt"
    if done.is_file():
        paths = [cache / name for name in done.read_text().split()]
        if all(p.is_file() for p in paths):
            return paths
    log.info("Generating the documentation figures into %s", cache)
    paths = _load_figure_script().generate(cache)
    done.write_text("\n".join(p.name for p in paths))
    return list(paths)


# ------------------------------------------------------------------------------------ results files
def _results_files(docs_dir: Path) -> list[str]:
    """Repository paths named by ``<!-- results: PATH -->`` markers in the pages."""
    found: list[str] = []
    for page in sorted(docs_dir.rglob("*.md")):
        found.extend(m["path"] for m in _RESULTS_MARKER_RE.finditer(page.read_text(encoding="utf-8")))
    return sorted(set(found))


def _local_target(target: str) -> bool:
    return not re.match(r"^([a-z][a-z0-9+.-]*:|#|/)", target, flags=re.IGNORECASE)


def _asset_links(results_path: str) -> list[str]:
    """Repository paths of the images and data files a results file links to (existing ones only)."""
    source = ROOT / results_path
    text = _FENCE_RE.sub("", source.read_text(encoding="utf-8"))
    assets = []
    for match in _LINK_RE.finditer(text):
        target = match["target"].split("#")[0]
        if not target or not _local_target(target):
            continue
        repo_path = posixpath.normpath(posixpath.join(posixpath.dirname(results_path), target))
        if Path(repo_path).suffix.lower() in ASSET_SUFFIXES and (ROOT / repo_path).is_file():
            assets.append(repo_path)
    return assets


def _demote(text: str, levels: int) -> str:
    return _HEADING_RE.sub(lambda m: "#" * min(len(m[1]) + levels, 6) + " ", text)


def _include_results(results_path: str, page_uri: str, levels: int = 1) -> str:
    """The results file, ready to sit under a heading of level ``levels``."""
    source = ROOT / results_path
    if not source.is_file():
        return (
            '!!! warning "Pending"\n\n'
            f"    This section shows `{results_path}`, which has not been committed yet. It appears here"
            " automatically once it exists.\n"
        )
    text = source.read_text(encoding="utf-8")
    page_dir = posixpath.dirname(page_uri)
    source_dir = posixpath.dirname(results_path)

    def relink(match: re.Match[str]) -> str:
        target, _, anchor = match["target"].partition("#")
        if not target or not _local_target(target):
            return match[0]
        repo_path = posixpath.normpath(posixpath.join(source_dir, target))
        if Path(repo_path).suffix.lower() in ASSET_SUFFIXES and (ROOT / repo_path).is_file():
            new_target = posixpath.relpath(f"{RESULTS_URI}/{repo_path}", page_dir or ".")
            return f"{match['bang']}[{match['text']}]({new_target}{match['title'] or ''})"
        if match["bang"]:
            log.warning(
                "Results file '%s' shows the image '%s', which is not in the repository (is it under a "
                "git-ignored folder such as benchmarks/out/?)",
                results_path,
                repo_path,
            )
            return match[0]
        return f"{match['text']} (`{repo_path}{'#' + anchor if anchor else ''}`)"

    # Rewrite outside code fences only; demote headings so the file's title sits under the page's.
    pieces, last = [], 0
    for fence in _FENCE_RE.finditer(text):
        pieces.append(_demote(_LINK_RE.sub(relink, text[last : fence.start()]), levels))
        pieces.append(fence[0])
        last = fence.end()
    pieces.append(_demote(_LINK_RE.sub(relink, text[last:]), levels))
    note = f"\n\n<small>Source: `{results_path}`, included verbatim at build time.</small>\n"
    return "".join(pieces).rstrip() + note


# ---------------------------------------------------------------------------------------- MkDocs hooks
def on_files(files: Files, config: MkDocsConfig, **kwargs: Any) -> Files:
    """Add the generated figures and the assets of the results files as virtual files."""
    for path in _figures():
        files.append(File.generated(config, f"{GENERATED_URI}/{path.name}", abs_src_path=str(path)))
    for results_path in _results_files(Path(config.docs_dir)):
        if (ROOT / results_path).is_file():
            for asset in _asset_links(results_path):
                files.append(File.generated(config, f"{RESULTS_URI}/{asset}", abs_src_path=str(ROOT / asset)))
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files, **kwargs: Any) -> str:
    """Replace ``<!-- results: PATH -->`` markers by the results files, under the heading before them."""

    def include(match: re.Match[str]) -> str:
        headings = _HEADING_RE.findall(_FENCE_RE.sub("", markdown[: match.start()]))
        return _include_results(match["path"], page.file.src_uri, len(headings[-1]) if headings else 1)

    return _RESULTS_MARKER_RE.sub(include, markdown)


def _mathml(tex: str, display: str, page: Page) -> str:
    latex = html.unescape(tex).strip()
    prepared = latex.replace(r"\begin{aligned}", r"\begin{align*}").replace(r"\end{aligned}", r"\end{align*}")
    prepared = re.sub(r"\\operatorname\*?\{([^{}]*)\}", r"\\mathrm{\1}", prepared)
    prepared = re.sub(r"\\text\{([^{}]*)\}", lambda m: r"\text{" + m[1].replace(r"\_", "_") + "}", prepared)
    try:
        mathml = latex_to_mathml(prepared, display=display)
    except Exception as error:
        log.warning(
            "Doc file '%s': cannot convert the formula %r to MathML: %s", page.file.src_uri, latex, error
        )
        return html.escape(latex)
    leftover = re.findall(r">(\\[A-Za-z]+|&amp;|&)<", mathml)
    if leftover:
        log.warning(
            "Doc file '%s': %s not supported by latex2mathml in %r", page.file.src_uri, leftover, latex
        )
    # The TeX source goes along as an annotation, so copying a formula still gives TeX.
    annotation = f'<annotation encoding="application/x-tex">{html.escape(latex)}</annotation>'
    match = re.fullmatch(r"(<math[^>]*>)(.*)</math>", mathml, flags=re.DOTALL)
    if match is None:
        return mathml
    return f"{match[1]}<semantics><mrow>{match[2]}</mrow>{annotation}</semantics></math>"


def on_page_content(html_text: str, page: Page, config: MkDocsConfig, files: Files, **kwargs: Any) -> str:
    """Turn the arithmatex placeholders into MathML."""
    html_text = _BLOCK_MATH_RE.sub(
        lambda m: f'<div class="arithmatex">{_mathml(m["tex"], "block", page)}</div>', html_text
    )
    return _INLINE_MATH_RE.sub(
        lambda m: f'<span class="arithmatex">{_mathml(m["tex"], "inline", page)}</span>', html_text
    )
