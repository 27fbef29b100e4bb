"""A self-contained HTML page of search results: one row per query, its top-k thumbnails with distances.

The page needs no server and no network: the thumbnails are JPEG data URIs, the style sheet is inline
and there is no script. Every path and label is HTML-escaped. A match whose identity is known for the
query and the gallery image (both named in a Market-1501-style convention) is framed green when they
agree and red when they differ; a gallery image that can no longer be read is shown as a grey box.

Examples:
    >>> from stadb_reid.search.query import Match, QueryResult
    >>> result = QueryResult("<q>.jpg", None, None, (Match(1, 0, "/g/a.jpg", 0.5, None, None),))
    >>> page = render_page([result], title="demo")
    >>> page.startswith("<!doctype html>"), "&lt;q&gt;.jpg" in page, page.count('class="missing"')
    (True, True, 2)
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path

from ..data.loaders import read_image
from ..errors import UnreadableImageError
from .query import Match, QueryResult

__all__ = ["THUMBNAIL_SIZE", "render_page", "thumbnail_uri"]

#: Largest width and height of a thumbnail, in pixels (person crops are about 1:2).
THUMBNAIL_SIZE = (96, 192)

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #1d1d1f; background: #f5f5f7; }
h1 { font-size: 20px; margin: 0 0 4px; }
.settings, .legend { color: #555; margin: 0 0 8px; }
.query { display: flex; gap: 16px; align-items: flex-start; background: #fff; border-radius: 8px;
         padding: 12px; margin: 16px 0; box-shadow: 0 1px 3px rgba(0, 0, 0, .12); }
figure { margin: 0; width: 112px; text-align: center; font-size: 12px; }
figure img, figure .missing { display: block; margin: 0 auto 4px; border: 4px solid transparent;
                              border-radius: 4px; }
figure img { max-width: 96px; }
figure .missing { display: flex; width: 64px; height: 128px; align-items: center;
                  justify-content: center; background: #ddd; color: #777; }
.probe img { border-color: #0a60d0; }
.same img, .same .missing { border-color: #1a9c3a; }
.other img, .other .missing { border-color: #d0312d; }
.legend b { padding: 0 6px; border-radius: 3px; color: #fff; font-weight: normal; }
.legend .probe { background: #0a60d0; }
.legend .same { background: #1a9c3a; }
.legend .other { background: #d0312d; }
.matches { display: flex; flex-wrap: wrap; gap: 8px; list-style: none; margin: 0; padding: 0; }
.name { display: block; overflow-wrap: anywhere; color: #555; }
.distance { font-variant-numeric: tabular-nums; font-weight: 600; }
"""


_LEGEND = (
    '<p class="legend">Frames: <b class="probe">query</b> <b class="same">same identity</b> '
    '<b class="other">other identity</b> (when the file names tell the identities)</p>\n'
)


def thumbnail_uri(path: str | Path, size: tuple[int, int] = THUMBNAIL_SIZE) -> str | None:
    """A ``data:image/jpeg;base64,...`` thumbnail of ``path``, or ``None`` if it cannot be read."""
    try:
        image = read_image(path)
    except UnreadableImageError:
        return None
    image.thumbnail(size)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _labels(pid: int | None, camid: int | None) -> str:
    return "" if pid is None or camid is None else f"<br>id {pid} · c{camid + 1}"


def _figure(path: str, caption: str, css: str) -> str:
    """A thumbnail with the file name (full path on hover) above ``caption`` (HTML)."""
    uri = thumbnail_uri(path)
    name, full = html.escape(Path(path).name), html.escape(path)
    picture = (
        f'<img src="{uri}" alt="{name}">'
        if uri is not None
        else f'<div class="missing" title="cannot read {full}">missing</div>'
    )
    return (
        f'<figure class="{css}">{picture}<figcaption>{caption}'
        f'<span class="name" title="{full}">{name}</span></figcaption></figure>'
    )


def _match_class(result: QueryResult, match: Match) -> str:
    if result.pid is None or match.pid is None:
        return "match"
    return "match same" if result.pid == match.pid else "match other"


def _query_section(result: QueryResult) -> str:
    probe = _figure(result.path, f"<b>query</b>{_labels(result.pid, result.camid)}", "probe")
    matches = "".join(
        "<li>"
        + _figure(
            match.path,
            f'#{match.rank} <span class="distance">{match.distance:.4f}</span>'
            + _labels(match.pid, match.camid),
            _match_class(result, match),
        )
        + "</li>"
        for match in result.matches
    )
    return f'<section class="query">{probe}<ol class="matches">{matches}</ol></section>'


def render_page(results: Sequence[QueryResult], *, title: str, settings: str = "") -> str:
    """The HTML page of ``results``.

    Args:
        results: The queries and their matches (from :func:`~stadb_reid.search.search_index`).
        title: The page title and heading.
        settings: One line under the heading (index, model, metric...).

    Returns:
        A complete HTML document.
    """
    body = "\n".join(_query_section(result) for result in results)
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        f'<h1>{html.escape(title)}</h1>\n<p class="settings">{html.escape(settings)}</p>\n'
        f"{_LEGEND if any(r.pid is not None for r in results) else ''}"
        f"{body}\n</body>\n</html>\n"
    )
