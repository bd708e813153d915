"""Small HTML building blocks: escaping, tables, embedded images, the page frame.

Every page is self-contained: styles inline in one ``<style>`` element, images
as base64 ``data:`` URIs, no scripts, no external resources, so it opens
offline in any browser and can be mailed as one file.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Sequence

from pipeline import __version__

STYLE = """
body {
  font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
  margin: 0; color: #1d1d1f; background: #f6f7f9; font-size: 14px; line-height: 1.4;
}
main { max-width: 1250px; margin: 0 auto; padding: 18px 28px 40px; background: #fff; }
h1 { font-size: 24px; margin: 4px 0 2px; }
h2 { font-size: 19px; margin: 28px 0 8px; border-bottom: 2px solid #e3e6ea; padding-bottom: 4px; }
h3 { font-size: 16px; margin: 18px 0 6px; }
.muted { color: #6b7280; font-size: 12px; }
table { border-collapse: collapse; margin: 6px 0 12px; font-size: 13px; }
th, td { border: 1px solid #d6dae0; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #eef1f5; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.badge {
  display: inline-block; min-width: 28px; padding: 1px 7px; border-radius: 10px;
  font-weight: 700; text-align: center; font-size: 12px;
}
.CR { background: #1a9850; color: #fff; }
.PR { background: #91cf60; color: #103010; }
.SD { background: #d9d9d9; color: #202020; }
.PD { background: #d73027; color: #fff; }
.NE { background: #7f7f7f; color: #fff; }
.na { background: #f0f0f0; color: #808080; }
.best { display: flex; gap: 14px; flex-wrap: wrap; margin: 8px 0 4px; }
.best div { border: 1px solid #d6dae0; border-radius: 8px; padding: 8px 14px; background: #fafbfc; }
.best .label { font-size: 12px; color: #6b7280; display: block; }
.best .badge { font-size: 16px; padding: 2px 12px; margin-top: 3px; }
.flags { border-left: 5px solid #e69f00; background: #fff8e6; padding: 8px 14px; margin: 12px 0; }
.flags.error { border-color: #d73027; background: #fdecea; }
.flags.none { border-color: #1a9850; background: #eef8f0; }
.flags ul { margin: 4px 0; padding-left: 20px; }
.flags li.error { color: #a50f15; font-weight: 600; }
.figures { display: flex; flex-wrap: wrap; gap: 10px; }
figure { margin: 0; display: table; background: #000; padding: 4px; border-radius: 4px; }
figure.plot { background: #fff; border: 1px solid #e3e6ea; }
figure img { display: block; max-width: 100%; height: auto; }
figcaption {
  display: table-caption; caption-side: bottom; background: #000; color: #e5e7eb;
  font-size: 12px; padding: 3px 6px 5px; border-radius: 0 0 4px 4px;
}
figure.plot figcaption { background: #fff; color: #374151; }
.legend span { display: inline-block; margin-right: 14px; font-size: 12px; }
.swatch {
  display: inline-block; width: 18px; height: 4px; vertical-align: middle; margin-right: 4px;
}
footer {
  margin-top: 30px; color: #6b7280; font-size: 12px;
  border-top: 1px solid #e3e6ea; padding-top: 8px;
}
"""


def escape(value: object) -> str:
    """HTML-escaped text of any value (``None`` becomes an empty string)."""
    return "" if value is None else html.escape(str(value), quote=True)


def badge(word: str | None) -> str:
    """A coloured response word (CR, PR, SD, PD, NE), or a grey n/a."""
    if not word:
        return '<span class="badge na">n/a</span>'
    css = word if word in ("CR", "PR", "SD", "PD", "NE") else "na"
    return f'<span class="badge {css}">{escape(word)}</span>'


def image_tag(png: bytes, alt: str) -> str:
    """An ``<img>`` with the PNG embedded as base64."""
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{escape(alt)}">'


def figure(png: bytes, alt: str, caption: str = "", *, plot: bool = False) -> str:
    css = ' class="plot"' if plot else ""
    caption_html = f"<figcaption>{caption}</figcaption>" if caption else ""
    return f"<figure{css}>{image_tag(png, alt)}{caption_html}</figure>"


def table(header: Sequence[str], rows: Iterable[Sequence[str]], numeric: Sequence[int] = ()) -> str:
    """A table; cells are HTML already (escape text before passing it)."""
    head = "".join(f"<th>{cell}</th>" for cell in header)
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="num">{cell}</td>' if i in numeric else f"<td>{cell}</td>"
            for i, cell in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def number_text(value: float | None, digits: int = 1, unit: str = "") -> str:
    if value is None:
        return '<span class="muted">n/a</span>'
    text = f"{value:.{digits}f}"
    return f"{text} {unit}".strip()


def signed_text(value: float | None, digits: int = 1, unit: str = "%") -> str:
    if value is None:
        return '<span class="muted">n/a</span>'
    return f"{value:+.{digits}f} {unit}".strip()


def page(title: str, body: str) -> str:
    """The whole HTML document."""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n"
        f"{body}\n"
        f"<footer>Made by liverburden {escape(__version__)}. "
        "Automated measurements for research use: "
        "check them against the images before any clinical decision.</footer>\n"
        "</main>\n</body>\n</html>\n"
    )
