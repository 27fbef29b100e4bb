"""The search results page: self-contained HTML that headless Chromium renders without a broken image.

Set ``SEARCH_PAGE_SCREENSHOT=/path/page.png`` to keep the screenshot the browser test takes.
"""

import json
import os
import re
from pathlib import Path

import pytest

from stadb_reid.data.synthetic import render_person
from stadb_reid.search import Match, QueryResult, render_page
from stadb_reid.search.html import thumbnail_uri
from stadb_reid.search.manifest import parse_labels

from ..browser import browser_tab

ODD_NAME = 'we<ird> & "odd" #1.png'


def person(folder: Path, name: str, identity: int, camera: int, image_seed: int = 0) -> str:
    path = folder / name
    render_person(identity, camera, image_seed=image_seed).save(path)
    return str(path)


def match(rank: int, path: str, distance: float) -> Match:
    return Match(rank, rank - 1, path, distance, *parse_labels(path))


@pytest.fixture
def results(tmp_path: Path) -> list[QueryResult]:
    """Two queries with five matches each: same and other identities, an unlabelled and a missing image."""
    g = tmp_path / "gallery"
    g.mkdir()
    gallery = [person(g, f"{pid:04d}_c{1 + pid % 2}s1_000001_01.jpg", pid, pid % 2) for pid in range(6)]
    odd = person(g, ODD_NAME, 9, 0)
    missing = str(g / "0005_c1s1_000009_01.jpg")  # deleted after indexing
    q = tmp_path / "queries"
    q.mkdir()
    first = person(q, "0001_c1s1_000002_01.jpg", 1, 0, image_seed=7)
    second = person(q, "walker.png", 4, 1, image_seed=3)
    first_matches = [(gallery[1], 0.1), (gallery[3], 0.4), (odd, 0.5), (missing, 0.6), (gallery[0], 0.7)]
    second_matches = [(gallery[4], 0.2), (gallery[2], 0.4), (gallery[5], 0.6), (odd, 0.8), (gallery[1], 1.0)]
    return [
        QueryResult(query, *parse_labels(query), tuple(match(r, *m) for r, m in enumerate(found, 1)))
        for query, found in ((first, first_matches), (second, second_matches))
    ]


def test_thumbnails_are_small_jpeg_data_uris(tmp_path: Path) -> None:
    path = person(tmp_path, "0001_c1s1_000001_01.jpg", 1, 0)
    uri = thumbnail_uri(path)
    assert uri is not None and uri.startswith("data:image/jpeg;base64,")
    assert len(uri) < 12_000
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    assert thumbnail_uri(tmp_path / "broken.jpg") is None
    assert thumbnail_uri(tmp_path / "gone.jpg") is None


def test_the_page_is_self_contained_and_escaped(results: list[QueryResult]) -> None:
    page = render_page(results, title="Gallery <search>", settings="index a&b")
    assert "<title>Gallery &lt;search&gt;</title>" in page and "index a&amp;b" in page
    assert ODD_NAME not in page and "we&lt;ird&gt; &amp; &quot;odd&quot; #1.png" in page
    sources = re.findall(r'<img src="([^"]*)"', page)
    assert len(sources) == 2 + 10 - 1 and all(s.startswith("data:image/jpeg;base64,") for s in sources)
    assert not re.search(r"(href|src)=\"(?!data:)", page)  # nothing to fetch
    assert page.count('class="missing"') == 1
    # Only the first query's name has labels: same identity once, other identities three times.
    assert page.count('class="match same"') == 1 and page.count('class="match other"') == 3


def test_the_page_renders_in_headless_chromium(results: list[QueryResult], tmp_path: Path) -> None:
    page = tmp_path / "page.html"
    page.write_text(render_page(results, title="Gallery search", settings="2 queries · top 5"))
    with browser_tab(tmp_path / "chromium-profile") as tab:
        url = page.as_uri()
        tab.goto(url)
        assert tab.evaluate("document.title") == "Gallery search"
        assert tab.evaluate("document.querySelectorAll('section.query').length") == 2
        assert tab.evaluate("document.querySelectorAll('section.query li').length") == 10
        tab.wait_for("[...document.images].every(i => i.complete)", "the thumbnails")
        sizes = tab.evaluate("[...document.images].map(i => [i.naturalWidth, i.naturalHeight])")
        assert len(sizes) == 11 and all(w > 0 and h > 0 for w, h in sizes), sizes  # no broken image
        assert tab.evaluate("document.querySelectorAll('.missing').length") == 1
        names = tab.evaluate("[...document.querySelectorAll('.name')].map(e => e.textContent)")
        assert ODD_NAME in names and "walker.png" in names
        captions = tab.evaluate("[...document.querySelectorAll('.match figcaption')].map(e => e.innerText)")
        assert captions[0].startswith("#1 0.1000") and "id 1 · c2" in captions[0]
        visible = "document.querySelector('section.query img').getBoundingClientRect().height"
        assert tab.evaluate(visible) > 50
        outside = [u for u in tab.requested_urls() if not u.startswith((url, "data:", "about:"))]
        assert not outside, f"the page requested {json.dumps(outside)}"
        shot = Path(os.environ.get("SEARCH_PAGE_SCREENSHOT") or tmp_path / "page.png")
        tab.screenshot(shot)
        assert shot.stat().st_size > 10_000
