"""Checks of the documentation site: strict build, runnable examples, API coverage, browser smoke test.

* ``mkdocs build --strict`` into a temporary folder (no broken link, no missing reference, no warning);
* every ```` ```python ```` block of ``docs/**/*.md`` runs (the blocks of one page share a namespace, in
  order, like a notebook); a block preceded by the line ``<!-- docs-test: skip -->`` is shown but not
  run (only for code that needs several processes or a GPU). The README's blocks run in
  ``tests/test_readme.py``;
* every public object of ``stadb_layers`` and every module of ``stadb_reid`` has an API page;
* headless Chromium loads the built site from a local HTTP server: the home page renders (with its
  figure and its math, and without any request leaving localhost), the search box finds the API page
  of ``SelfThresholdDrop``, and that page shows the signature. Chromium is driven over the DevTools
  protocol on a pipe (``--remote-debugging-pipe``, see ``tests/browser.py``), so the test needs no driver
  and no Python package beyond the standard library. Set ``DOCS_SCREENSHOT_DIR`` to keep the screenshots
  it takes.
"""

from __future__ import annotations

import functools
import http.server
import importlib.util
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from ..browser import Tab, browser_tab

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
DOCS_INSTALL = "pip install -e . -e 'examples/stadb_reid[docs]'"
SKIP_MARKER = "<!-- docs-test: skip -->"
# Extras an example may import; without them the page's examples are skipped, not failed.
OPTIONAL_MODULES = frozenset(
    {"timm", "torchvision", "onnx", "onnxscript", "onnxruntime", "omegaconf", "typer"}
)
_FENCE_RE = re.compile(
    r"^(?P<indent>[ \t]*)(?P<fence>```+|~~~+)(?P<info>[^\n]*)\n(?P<body>.*?)^(?P=indent)(?P=fence)[ \t]*$",
    re.M | re.S,
)


# ------------------------------------------------------------------------------------------ helpers
def python_blocks(path: Path) -> list[tuple[int, str]]:
    """``(line number, code)`` of the ```` ```python ```` blocks of a Markdown file, minus skipped ones.

    A block counts when its info string starts with ``python`` (attributes such as ``title="..."``
    may follow). It is skipped when the line before the fence is ``<!-- docs-test: skip -->``.
    """
    text = path.read_text(encoding="utf-8")
    blocks = []
    for match in _FENCE_RE.finditer(text):
        info = match["info"].strip()
        if not re.match(r"^(python|py)(\s|$)", info):
            continue
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1].strip()
        if before == SKIP_MARKER:
            continue
        indent = len(match["indent"])
        body = "\n".join(line[indent:] for line in match["body"].splitlines())
        blocks.append((text.count("\n", 0, match.start()) + 2, body))
    return blocks


def doc_pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


@functools.cache
def built_site(out_dir: Path) -> tuple[Path, str]:
    """Run ``mkdocs build --strict`` once into ``out_dir``; return the site folder and the log."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONWARNINGS": "ignore"}
    site = out_dir / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--clean", "--site-dir", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{log[-6000:]}"
    return site, log


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    for module in ("mkdocs", "material", "mkdocstrings_handlers.python", "latex2mathml", "matplotlib"):
        pytest.importorskip(module, reason=f"{module} is not installed: {DOCS_INSTALL}")
    return built_site(tmp_path_factory.mktemp("docs"))[0]


# ---------------------------------------------------------------------------------------- the build
def test_mkdocs_build_strict(site: Path) -> None:
    for page in ("index.html", "api/stadb_layers/threshold-drop/index.html", "search/search_index.json"):
        assert (site / page).is_file(), page
    home = (site / "index.html").read_text(encoding="utf-8")
    assert "assets/generated/stadb_pipeline.png" in home
    assert (site / "assets/generated/stadb_pipeline.png").stat().st_size > 10_000
    # Every formula became MathML at build time; no TeX placeholder is left for a script to render.
    for html_file in site.rglob("*.html"):
        text = html_file.read_text(encoding="utf-8")
        assert not re.search(r'class="arithmatex">\\[(\[]', text), html_file


# ------------------------------------------------------------------------------------ code examples
PAGES_WITH_EXAMPLES = [page for page in doc_pages() if python_blocks(page)]


@pytest.mark.parametrize("page", PAGES_WITH_EXAMPLES, ids=lambda p: str(p.relative_to(DOCS)))
def test_python_examples_run(page: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    blocks = python_blocks(page)
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    namespace: dict[str, Any] = {"__name__": "__docs_example__"}
    for line, code in blocks:
        try:
            exec(compile(code, f"{page.relative_to(ROOT)}:{line}", "exec"), namespace)
        except ModuleNotFoundError as error:
            if error.name in OPTIONAL_MODULES:
                pytest.skip(f"{error.name} is not installed (the examples of this page need it)")
            raise


def test_python_blocks_parser(tmp_path: Path) -> None:
    sample = tmp_path / "probe.md"
    text = (
        "```python\na = 1\n```\n\n"
        "<!-- docs-test: skip -->\n```python\nraise SystemExit\n```\n\n"
        "```bash\nls\n```\n"
    )
    sample.write_text(text)
    assert python_blocks(sample) == [(2, "a = 1")]


# ------------------------------------------------------------------------------------- API coverage
def _api_directives() -> set[str]:
    found: set[str] = set()
    for page in (DOCS / "api").rglob("*.md"):
        found.update(re.findall(r"^::: ([\w.]+)", page.read_text(encoding="utf-8"), flags=re.M))
    return found


def test_every_public_object_has_an_api_page() -> None:
    import stadb_layers

    documented = _api_directives()
    missing = []
    for name in stadb_layers.__all__:
        obj = getattr(stadb_layers, name)
        if not {f"stadb_layers.{name}", f"{obj.__module__}.{obj.__qualname__}"} & documented:
            missing.append(f"stadb_layers.{name}")
    package = ROOT / "examples" / "stadb_reid"
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if any(part.startswith("_") for part in parts):
            continue  # __main__ and private modules
        module = ".".join(parts)
        if module != "stadb_reid" and module not in documented:
            missing.append(module)
    assert not missing, f"add a '::: name' directive under docs/api/ for: {', '.join(missing)}"


def test_every_bundled_config_is_documented() -> None:
    page = (DOCS / "reid" / "configs.md").read_text(encoding="utf-8")
    configs = sorted(p.stem for p in (ROOT / "examples" / "stadb_reid" / "configs").rglob("*.yaml"))
    missing = [name for name in configs if f"`{name}`" not in page]
    assert configs and not missing, f"document these bundled configs in docs/reid/configs.md: {missing}"


def test_every_bundled_sweep_grid_is_documented() -> None:
    page = (DOCS / "reid" / "sweeps.md").read_text(encoding="utf-8")
    grids = sorted(p.stem for p in (ROOT / "examples" / "stadb_reid" / "sweeps").glob("*.yaml"))
    missing = [name for name in grids if f"| `{name}` |" not in page]
    assert grids and not missing, f"document these bundled sweep grids in docs/reid/sweeps.md: {missing}"


def test_demo_config_row_states_its_size_and_epochs() -> None:
    from stadb_reid.config import load_config

    page = (DOCS / "reid" / "configs.md").read_text(encoding="utf-8")
    row = next(line for line in page.splitlines() if line.startswith("| `demo_cpu` |"))
    config = load_config(["demo_cpu"])
    assert f"{config.data.height} x {config.data.width}" in row, row
    assert f"{config.optim.epochs} epochs" in row, row


# ------------------------------------------------------------------------------- docs/hooks.py
def load_hooks() -> Any:
    for module in ("mkdocs", "latex2mathml"):
        pytest.importorskip(module, reason=f"{module} is not installed: {DOCS_INSTALL}")
    spec = importlib.util.spec_from_file_location("stadb_docs_hooks_under_test", DOCS / "hooks.py")
    assert spec is not None and spec.loader is not None
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    return hooks


def test_results_files_are_included_with_their_plots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hooks = load_hooks()
    monkeypatch.setattr(hooks, "ROOT", tmp_path)
    (tmp_path / "bench" / "plots").mkdir(parents=True)
    (tmp_path / "bench" / "plots" / "a.png").write_bytes(b"png")
    (tmp_path / "bench" / "RESULTS.md").write_text(
        "# Title\n\nSee [the script](run.py).\n\n![plot](plots/a.png)\n\n## Part\n\n"
        "```bash\n# not a heading [x](y.png)\n```\n"
    )
    assert hooks._asset_links("bench/RESULTS.md") == ["bench/plots/a.png"]
    text = hooks._include_results("bench/RESULTS.md", "reid/results.md", levels=2)
    assert text.startswith("### Title") and "\n#### Part\n" in text
    assert "![plot](../results/bench/plots/a.png)" in text
    assert "the script (`bench/run.py`)" in text
    assert "```bash\n# not a heading [x](y.png)\n```" in text
    assert "Pending" in hooks._include_results("bench/MISSING.md", "benchmarks.md")


def test_unsupported_math_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    hooks = load_hooks()
    page = SimpleNamespace(file=SimpleNamespace(src_uri="page.md"))
    assert "<math" in hooks._mathml(r"\alpha \max_{h,w} A", "inline", page)
    assert not caplog.records
    hooks._mathml(r"\unknowncommand x", "inline", page)
    assert any("not supported" in record.getMessage() for record in caplog.records)


# -------------------------------------------------------------------------- headless Chromium smoke
@pytest.fixture
def served_site(site: Path) -> Iterator[str]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def tab(tmp_path: Path) -> Iterator[Tab]:
    with browser_tab(tmp_path / "chromium-profile") as opened:
        yield opened


def _screenshot_dir(tmp_path: Path) -> Path:
    target = Path(os.environ.get("DOCS_SCREENSHOT_DIR") or tmp_path)
    target.mkdir(parents=True, exist_ok=True)
    return target


def test_site_in_headless_chromium(served_site: str, tab: Tab, tmp_path: Path) -> None:
    shots = _screenshot_dir(tmp_path)

    def visible(selector: str) -> str:
        return (
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " return !!e && e.getBoundingClientRect().height > 0; })()"
        )

    # 1. The home page renders: title, the STADB figure (loaded), MathML formulas, navigation.
    tab.goto(served_site)
    tab.wait_for(visible("h1"), "the home page heading")
    assert "stadb-layers" in tab.evaluate("document.title")
    tab.wait_for(
        "[...document.images].some("
        "i => i.src.includes('stadb_pipeline.png') && i.complete && i.naturalWidth > 0)",
        "the STADB figure",
    )
    assert tab.evaluate("document.querySelectorAll('math').length") > 0
    assert tab.evaluate("document.querySelectorAll('nav.md-nav a').length") > 10
    tab.screenshot(shots / "home.png")

    # 2. The search box finds the API page of SelfThresholdDrop.
    tab.evaluate("document.querySelector('label.md-search__icon, label[for=__search]').click()")
    tab.wait_for(visible("input.md-search__input"), "the search box")
    tab.evaluate("document.querySelector('input.md-search__input').focus()")
    tab.type_text("SelfThresholdDrop")
    api_link = tab.wait_for(
        "[...document.querySelectorAll('.md-search-result a')].map(a => a.href)"
        ".find(h => h.includes('/api/stadb_layers/threshold-drop/'))",
        "an API page among the search results",
    )
    tab.screenshot(shots / "search.png")

    # 3. The API page shows the signature.
    tab.goto(api_link)
    signature = tab.wait_for(
        "[...document.querySelectorAll('.doc-signature')].map(e => e.innerText)"
        ".find(t => t.includes('SelfThresholdDrop('))",
        "the signature of SelfThresholdDrop",
    )
    assert "alpha" in signature and "drop_ratio" in signature
    assert tab.evaluate(visible(".doc-signature"))
    tab.screenshot(shots / "api.png")

    # Nothing was fetched from outside the local server: the site works offline.
    outside = [u for u in tab.requested_urls() if not u.startswith((served_site, "data:", "blob:", "about:"))]
    assert not outside, f"the site requested external resources: {outside}"
