"""Render the lecture decks (Marp Markdown) to HTML slide shows, and to PDF where Chromium is.

    python slides/render.py                      # every deck -> slides/build/**.html (+ .pdf)
    python slides/render.py slides/L4_openai_server.md --no-pdf
    python slides/render.py --check              # also: no slide's content overflows its page
    python slides/render.py --png slides/L1_kv_cache.md:1,6   # screenshots of slides 1 and 6

The decks are Marp Markdown (https://marp.app): plain Markdown with `---` between slides, a
front matter (`marp: true`, `paginate`, `footer`), directives in HTML comments
(`<!-- _class: lead -->`) and Marp's image sizes (`![w:900](figures/x.png)`). They read fine as
plain Markdown and open in Marp's own tools; this script renders the subset they use with
markdown-it-py, so presenting needs no Node.js: open `slides/build/<deck>.html` in a browser,
then arrow keys / space / PageUp / PageDown move, `f` is full screen, `n` shows the speaker
notes (the other HTML comments of a slide), and `#7` in the address opens slide 7.
`<deck>.html?all` shows every slide one under another (and prints one slide per page).

Every relative link and image is checked: a missing file is an error, not a broken picture.
The fenced code blocks carry tags after the language (`bash client`, `bash gpu`, ...) that
`tests/test_slides.py` reads to run them; `code_blocks()` below lists them.
"""

from __future__ import annotations

import argparse
import html
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from markdown_it import MarkdownIt

SLIDES_DIR = Path(__file__).resolve().parent
BUILD_DIR = SLIDES_DIR / "build"
WIDTH, HEIGHT = 1280, 720

TAGS = {
    "": "runs on a CPU in seconds: tests/test_slides.py runs it from the repository root",
    "client": "talks to the server of the deck's first `server` block on localhost:8000",
    "server": "starts a long-running server: the test checks its flags (and starts the first "
              "one of a deck that has `client` blocks)",
    "gpu": "needs an NVIDIA GPU: the test only checks its flags / that its module exists",
    "slow": "runs on a CPU but takes minutes (a benchmark): the test only checks its module",
    "output": "what a command printed (not a command)",
}
"""The tags a ```bash block may carry after its language, and what they mean."""


# -- parsing --------------------------------------------------------------------------------------
@dataclass
class CodeBlock:
    deck: Path
    slide: int
    """1-based slide number."""
    lang: str
    tags: list[str]
    text: str

    @property
    def tag(self) -> str:
        return self.tags[0] if self.tags else ""

    @property
    def name(self) -> str:
        return f"{self.deck.relative_to(SLIDES_DIR).as_posix()}:{self.slide}"


@dataclass
class Slide:
    number: int
    markdown: str
    classes: list[str] = field(default_factory=list)
    paginate: bool = False
    notes: list[str] = field(default_factory=list)


@dataclass
class Deck:
    path: Path
    meta: dict[str, str]
    slides: list[Slide]

    @property
    def title(self) -> str:
        if "title" in self.meta:
            return self.meta["title"]
        match = re.search(r"^#\s+(.+)$", self.slides[0].markdown, re.M)
        return match.group(1).strip() if match else self.path.stem


_FENCE = re.compile(r"^( {0,3})(`{3,}|~{3,})(.*)$")
_COMMENT = re.compile(r"<!--(.*?)-->", re.S)
_DIRECTIVE = re.compile(r"^\s*(_?)(class|paginate|footer)\s*:\s*(.*?)\s*$")


def _segments(text: str) -> list[tuple[bool, str]]:
    """Split Markdown into (inside_a_fence, text) runs, so comments and `---` are only looked
    for outside code."""
    runs: list[tuple[bool, list[str]]] = [(False, [])]
    fence: str | None = None
    for line in text.splitlines(keepends=True):
        match = _FENCE.match(line.rstrip("\n"))
        if fence is None and match:
            fence = match.group(2)
            runs.append((True, [line]))
            continue
        runs[-1][1].append(line)
        if fence is not None and match and match.group(2).startswith(fence[0]) \
                and len(match.group(2)) >= len(fence) and not match.group(3).strip():
            fence = None
            runs.append((False, []))
    return [(inside, "".join(lines)) for inside, lines in runs if lines]


def parse_deck(path: Path) -> Deck:
    text = path.read_text(encoding="utf-8")
    meta: dict[str, str] = {}
    if text.startswith("---\n"):
        end = text.index("\n---\n", 3)
        for line in text[4:end].splitlines():
            if ":" in line and not line.lstrip().startswith("#"):
                key, value = line.split(":", 1)
                meta[key.strip()] = value.strip().strip("'\"")
        text = text[end + 5:]
    chunks: list[str] = [""]
    for inside, run in _segments(text):
        if inside:
            chunks[-1] += run
            continue
        for line in run.splitlines(keepends=True):
            if line.rstrip() == "---":
                chunks.append("")
            else:
                chunks[-1] += line
    slides = []
    classes = meta.get("class", "").split()
    paginate = meta.get("paginate", "false").lower() == "true"
    for number, chunk in enumerate(chunks, 1):
        slide = Slide(number, chunk, list(classes), paginate)
        local_class: list[str] | None = None
        local_paginate: bool | None = None
        for inside, run in _segments(chunk):
            if inside:
                continue
            for comment in _COMMENT.findall(run):
                directives = [_DIRECTIVE.match(line) for line in comment.strip().splitlines()]
                if comment.strip() and all(directives):
                    for d in directives:
                        assert d is not None
                        local, key, value = d.groups()
                        if key == "class":
                            if local:
                                local_class = value.split()
                            else:
                                classes = value.split()
                                slide.classes = list(classes)
                        elif key == "paginate":
                            if local:
                                local_paginate = value.lower() == "true"
                            else:
                                paginate = value.lower() == "true"
                                slide.paginate = paginate
                elif not comment.strip().startswith("capture:"):
                    slide.notes.append(comment.strip())
        if local_class is not None:
            slide.classes = local_class
        if local_paginate is not None:
            slide.paginate = local_paginate
        slides.append(slide)
    return Deck(path, meta, slides)


def code_blocks(deck: Deck) -> list[CodeBlock]:
    """Every fenced code block of the deck, with its language and tags (`bash client`)."""
    blocks = []
    for slide in deck.slides:
        for token in MarkdownIt("commonmark").parse(slide.markdown):
            if token.type == "fence":
                words = token.info.split()
                blocks.append(CodeBlock(deck.path, slide.number, words[0] if words else "",
                                        words[1:], token.content))
    return blocks


def find_decks(root: Path = SLIDES_DIR) -> list[Path]:
    """The decks: every Markdown file under slides/ whose front matter says `marp: true`."""
    decks = []
    for path in sorted(root.rglob("*.md")):
        if BUILD_DIR in path.parents:
            continue
        if re.match(r"---\n(?:.*\n)*?marp:\s*true\s*\n", path.read_text(encoding="utf-8")):
            decks.append(path)
    return decks


# -- rendering ------------------------------------------------------------------------------------
class BrokenLinkError(Exception):
    pass


def _is_local(url: str) -> bool:
    parts = urlsplit(url)
    return not parts.scheme and not parts.netloc and not url.startswith(("#", "/"))


class _Renderer:
    """markdown-it with Marp's image sizes, code tags, highlighting and checked local links."""

    def __init__(self, deck: Deck, out_dir: Path, decks: list[Path], out_root: Path) -> None:
        self.deck, self.out_dir, self.out_root = deck, out_dir, out_root
        self.rendered = {p.resolve() for p in decks}
        self.broken: list[str] = []
        self.slide = 0
        self.md = MarkdownIt("commonmark", {"html": True, "typographer": False,
                                            "highlight": self.highlight})
        self.md.enable(["table", "strikethrough"])
        # markdown-it binds a rule to its renderer: wrap ours so `self` stays this object
        self.md.add_render_rule("image", lambda _r, *args: self.image(*args))
        self.md.add_render_rule("link_open", lambda _r, *args: self.link_open(*args))

    def url(self, url: str) -> str:
        """A local URL, checked and made relative to the output folder."""
        if not _is_local(url):
            return url
        parts = urlsplit(url)
        target = (self.deck.path.parent / parts.path).resolve()
        if not target.exists():
            self.broken.append(f"{self.deck.path.name} slide {self.slide}: {url} "
                               f"({target} does not exist)")
            return url
        if target in self.rendered:  # a link to another deck opens its rendered slides
            target = self.out_root / target.relative_to(SLIDES_DIR).with_suffix(".html")
        relative = os.path.relpath(target, self.out_dir)
        return relative + (f"#{parts.fragment}" if parts.fragment else "")

    def image(self, tokens, idx, options, env) -> str:
        token = tokens[idx]
        alt_words = self.md.renderer.renderInlineAsText(token.children or [], options, env).split()
        style, alt = [], []
        for word in alt_words:
            match = re.fullmatch(r"(w|width|h|height):(\d+)(px)?", word)
            if match:
                prop = "width" if match.group(1).startswith("w") else "height"
                style.append(f"{prop}:{match.group(2)}px")
            elif word == "center":
                style.append("display:block;margin:0 auto")
            else:
                alt.append(word)
        src = self.url(str(token.attrs.get("src", "")))
        style_attr = f' style="{";".join(style)}"' if style else ""
        return (f'<img src="{html.escape(src)}" alt="{html.escape(" ".join(alt))}"'
                f'{style_attr}>')

    def link_open(self, tokens, idx, options, env) -> str:
        token = tokens[idx]
        token.attrSet("href", self.url(str(token.attrs.get("href", ""))))
        return self.md.renderer.renderToken(tokens, idx, options, env)

    def highlight(self, code: str, lang: str, attrs: str) -> str:
        info = f"{lang} {attrs}".split()
        tags = info[1:]
        body = _highlight(code, info[0] if info else "")
        tag_attr = f' data-tag="{html.escape(tags[0])}"' if tags else ""
        return (f'<pre class="code"{tag_attr}><code class="language-{html.escape(lang)}">'
                f"{body}</code></pre>\n")

    def render(self, slide: Slide) -> str:
        self.slide = slide.number
        return self.md.render(slide.markdown)


def _highlight(code: str, lang: str) -> str:
    try:
        from pygments import highlight
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import get_lexer_by_name
        from pygments.util import ClassNotFound
    except ImportError:
        return html.escape(code)
    try:
        lexer = get_lexer_by_name(lang) if lang and lang != "text" else None
    except ClassNotFound:
        lexer = None
    if lexer is None:
        return html.escape(code)
    return highlight(code, lexer, HtmlFormatter(nowrap=True))


def _pygments_css() -> str:
    try:
        from pygments.formatters import HtmlFormatter
    except ImportError:
        return ""
    return HtmlFormatter(style="friendly").get_style_defs("pre.code")


def render_deck(deck_path: Path, out_dir: Path | None = None,
                decks: list[Path] | None = None, out_root: Path = BUILD_DIR) -> Path:
    """Write the deck's HTML (under `out_root`, mirroring its place under slides/) and return
    its path. Raises BrokenLinkError listing every local link or image that does not exist."""
    deck = parse_deck(deck_path)
    try:
        relative = deck_path.resolve().relative_to(SLIDES_DIR)
    except ValueError:  # a deck outside slides/ (the tests make some)
        relative = Path(deck_path.name)
    target = out_root / relative.with_suffix(".html")
    out_dir = target.parent if out_dir is None else out_dir
    renderer = _Renderer(deck, out_dir, decks if decks is not None else find_decks(), out_root)
    sections = []
    footer = deck.meta.get("footer", "")
    for slide in deck.slides:
        body = renderer.render(slide)
        notes = "".join(f"<p>{html.escape(n)}</p>" for n in slide.notes)
        page = (f'<span class="pageno">{slide.number} / {len(deck.slides)}</span>'
                if slide.paginate else "")
        foot = f'<footer>{html.escape(footer)}</footer>' if footer and slide.paginate else ""
        sections.append(
            f'<section class="slide {" ".join(slide.classes)}" id="s{slide.number}">\n'
            f'<div class="content">\n{body}</div>{foot}{page}'
            f'<aside class="notes">{notes}</aside></section>')
    if renderer.broken:
        raise BrokenLinkError("\n".join(renderer.broken))
    lang = deck.meta.get("lang", "en")
    page = _TEMPLATE.format(lang=html.escape(lang), title=html.escape(deck.title),
                            css=_CSS + _pygments_css(), width=WIDTH, height=HEIGHT,
                            sections="\n".join(sections), script=_SCRIPT)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(page, encoding="utf-8")
    return target


# -- Chromium: PDF, screenshots, overflow ---------------------------------------------------------
def find_chromium() -> str | None:
    for name in (os.environ.get("CHROME_PATH"), "chromium", "chromium-browser",
                 "google-chrome", "google-chrome-stable"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _chromium(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    browser = find_chromium()
    if browser is None:
        raise RuntimeError("no Chromium found (install Debian's `chromium`, or set CHROME_PATH)")
    with tempfile.TemporaryDirectory(prefix="minivllm-slides-") as profile:
        command = [browser, "--headless", "--no-sandbox", "--disable-gpu",
                   "--disable-background-networking", "--disable-component-update",
                   "--disable-sync", "--no-first-run", "--hide-scrollbars",
                   f"--user-data-dir={profile}", "--virtual-time-budget=5000", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              check=False)


def print_pdf(html_path: Path, pdf_path: Path) -> None:
    _chromium(["--no-pdf-header-footer", f"--print-to-pdf={pdf_path}",
               html_path.resolve().as_uri() + "?all"])
    if not pdf_path.exists():
        raise RuntimeError(f"Chromium wrote no {pdf_path}")


def screenshot(html_path: Path, slide: int, png_path: Path) -> None:
    _chromium([f"--screenshot={png_path}", f"--window-size={WIDTH},{HEIGHT}",
               f"{html_path.resolve().as_uri()}#{slide}"])
    if not png_path.exists():
        raise RuntimeError(f"Chromium wrote no {png_path}")


def overflowing_slides(html_path: Path) -> list[str]:
    """Slides whose content does not fit the 1280x720 page (or has a code line too wide), as
    the page's own script measures them in Chromium."""
    dom = _chromium(["--dump-dom", html_path.resolve().as_uri() + "?all&measure"]).stdout
    if 'data-measured="1"' not in dom:
        raise RuntimeError(f"Chromium did not measure {html_path}")
    return [f"{html_path.name} slide {n}: {what}"
            for n, what in re.findall(r'id="s(\d+)"[^>]*data-overflow="([^"]+)"', dom)]


# -- the page -------------------------------------------------------------------------------------
_TEMPLATE = """<!doctype html>
<html lang="{lang}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
@page {{ size: {width}px {height}px; margin: 0; }}
{css}
</style>
</head>
<body>
<main id="deck">
{sections}
</main>
<script>
{script}
</script>
</body>
</html>
"""

_CSS = """
:root { --accent: #1f5fa8; --ink: #1d2330; --muted: #6b7385; --code-bg: #f4f6fa; --s: 1; }
* { box-sizing: border-box; }
html, body { margin: 0; padding: 0; background: #2b2f36; }
section.slide {
  width: 1280px; height: 720px; overflow: hidden; position: absolute; left: 50%; top: 50%;
  transform: translate(-50%, -50%) scale(var(--s)); display: none; background: #fff;
  color: var(--ink); padding: 40px 64px 44px 64px;
  font-family: "DejaVu Sans", "Noto Sans CJK SC", "Noto Sans SC", "Helvetica Neue", Arial,
    "PingFang SC", "Microsoft YaHei", sans-serif;
  font-size: 25px; line-height: 1.38;
}
section.slide.active { display: block; }
body.all section.slide, body.print section.slide {
  display: block; position: relative; left: auto; top: auto; transform: none;
  margin: 0 auto 16px auto; break-after: page; page-break-after: always;
}
@media print {
  html, body { background: #fff; }
  section.slide { display: block !important; position: relative !important; left: auto !important;
    top: auto !important; transform: none !important; margin: 0 !important;
    break-after: page; page-break-after: always; }
  aside.notes { display: none !important; }
}
.content { height: 100%; }
h1 { font-size: 36px; color: var(--accent); margin: 0 0 18px 0; padding-bottom: 8px;
     border-bottom: 3px solid #d5e1f0; line-height: 1.2; }
h2 { font-size: 28px; color: var(--accent); margin: 8px 0 10px 0; }
h3 { font-size: 25px; margin: 6px 0 6px 0; }
p { margin: 8px 0; }
ul, ol { margin: 6px 0; padding-left: 32px; }
li { margin: 3px 0; }
li > ul, li > ol { margin: 2px 0; }
strong { color: #0d3b73; }
a { color: var(--accent); }
code { font-family: "DejaVu Sans Mono", "Noto Sans Mono CJK SC", Menlo, Consolas, monospace;
       font-size: 0.86em; background: var(--code-bg); padding: 1px 5px; border-radius: 4px; }
pre.code { position: relative; background: var(--code-bg); border-left: 4px solid var(--accent);
  padding: 10px 14px; margin: 10px 0; font-size: 17px; line-height: 1.32; overflow-x: auto;
  border-radius: 4px; }
pre.code code { background: none; padding: 0; font-size: 1em; }
pre.code[data-tag="output"] { border-left-color: #7a8699; background: #f7f7f7;
  white-space: pre-wrap; word-break: break-all; font-size: 14px; line-height: 1.25; }
pre.code[data-tag="diagram"] { background: none; border: none; font-size: 21px;
  line-height: 1.25; }
pre.code[data-tag]:not([data-tag="diagram"]) { padding-bottom: 24px; }
pre.code[data-tag]::after { position: absolute; bottom: 4px; right: 8px; font-size: 13px;
  font-family: "DejaVu Sans", sans-serif; color: #fff; padding: 1px 8px; border-radius: 10px; }
pre.code[data-tag="gpu"]::after { content: "GPU"; background: #76b900; }
pre.code[data-tag="server"]::after { content: "server"; background: #8a5cd0; }
pre.code[data-tag="client"]::after { content: "client"; background: #d0822a; }
pre.code[data-tag="output"]::after { content: "output"; background: #7a8699; }
pre.code[data-tag="slow"]::after { content: "takes minutes"; background: #b0413e; }
table { border-collapse: collapse; margin: 10px 0; font-size: 21px; }
th, td { border: 1px solid #cfd6e2; padding: 4px 12px; text-align: left; vertical-align: top; }
th { background: #e9eff8; }
img { max-width: 100%; max-height: 540px; }
blockquote { margin: 10px 0; padding: 6px 18px; border-left: 5px solid #f0a030;
             background: #fff8ec; }
blockquote p { margin: 4px 0; }
.cols { display: grid; grid-template-columns: 1fr 1fr; gap: 28px; align-items: start; }
.cols.wide-left { grid-template-columns: 3fr 2fr; }
.cols.wide-right { grid-template-columns: 2fr 3fr; }
.cols > div > :first-child { margin-top: 0; }
.muted, .source { color: var(--muted); }
.source { font-size: 16px; }
section.small { font-size: 21px; }
section.small h1 { font-size: 32px; margin-bottom: 12px; }
section.small pre.code { font-size: 15.5px; }
section.small pre.code[data-tag="output"] { font-size: 13px; }
section.small table { font-size: 18px; }
section.lead .content { display: flex; flex-direction: column; justify-content: center; }
section.lead h1 { font-size: 48px; border: none; margin-bottom: 10px; }
section.lead h2 { color: var(--muted); font-weight: normal; }
section.lead p { color: var(--muted); }
section.figure img { display: block; margin: 0 auto; }
.pageno { position: absolute; right: 28px; bottom: 14px; font-size: 15px; color: var(--muted); }
footer { position: absolute; left: 64px; bottom: 14px; font-size: 15px; color: var(--muted); }
aside.notes { display: none; }
body.notes section.slide.active aside.notes { display: block; position: absolute; left: 0;
  right: 0; bottom: 0; max-height: 40%; overflow: auto; background: rgba(20, 24, 32, 0.92);
  color: #f0f0f0; font-size: 20px; padding: 12px 24px; }
"""

_SCRIPT = """
(function () {
  const slides = Array.from(document.querySelectorAll('section.slide'));
  const params = new URLSearchParams(location.search);
  let current = 0;
  function fit() {
    const s = Math.min(window.innerWidth / 1280, window.innerHeight / 720);
    document.documentElement.style.setProperty('--s', s);
  }
  function show(i) {
    current = Math.max(0, Math.min(slides.length - 1, i));
    slides.forEach((el, j) => el.classList.toggle('active', j === current));
    if (location.hash !== '#' + (current + 1)) history.replaceState(null, '', '#' + (current + 1));
  }
  function fromHash() {
    const n = parseInt(location.hash.replace(/^#s?/, ''), 10);
    show(isNaN(n) ? 0 : n - 1);
  }
  if (params.has('all')) {
    document.body.classList.add('all');
  } else {
    fit(); fromHash();
    window.addEventListener('resize', fit);
    window.addEventListener('hashchange', fromHash);
    document.addEventListener('keydown', (e) => {
      if (['ArrowRight', 'ArrowDown', 'PageDown', ' ', 'Enter'].includes(e.key)) show(current + 1);
      else if (['ArrowLeft', 'ArrowUp', 'PageUp', 'Backspace'].includes(e.key)) show(current - 1);
      else if (e.key === 'Home') show(0);
      else if (e.key === 'End') show(slides.length - 1);
      else if (e.key === 'n') document.body.classList.toggle('notes');
      else if (e.key === 'f') {
        if (document.fullscreenElement) document.exitFullscreen();
        else document.documentElement.requestFullscreen();
      } else return;
      e.preventDefault();
    });
    document.addEventListener('click', (e) => {
      if (e.target.closest('a')) return;
      show(current + (e.clientX > window.innerWidth / 3 ? 1 : -1));
    });
  }
  function measure() {
    slides.forEach((el) => {
      const what = [];
      const content = el.querySelector('.content');
      let bottom = 0;
      content.querySelectorAll(':scope > *').forEach((child) => {
        bottom = Math.max(bottom, child.getBoundingClientRect().bottom);
      });
      const limit = el.getBoundingClientRect().top + 720 - 30;
      if (bottom > limit) what.push('content ' + Math.round(bottom - limit) + 'px too tall');
      el.querySelectorAll('pre').forEach((pre) => {
        if (pre.scrollWidth > pre.clientWidth + 1) what.push('a code line too wide');
      });
      el.querySelectorAll('table, img, .cols').forEach((t) => {
        const r = t.getBoundingClientRect(), box = el.getBoundingClientRect();
        if (r.right > box.right - 20) what.push(t.tagName.toLowerCase() + ' too wide');
      });
      if (what.length) el.dataset.overflow = what.join('; ');
    });
    document.body.dataset.measured = '1';
  }
  if (params.has('measure')) {
    if (document.readyState === 'complete') measure();
    else window.addEventListener('load', measure);
  }
})();
"""


# -- command line ---------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python slides/render.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("decks", nargs="*", type=Path,
                        help="decks to render (default: every deck under slides/)")
    parser.add_argument("--no-pdf", action="store_true", help="HTML only")
    parser.add_argument("--check", action="store_true",
                        help="measure every slide in Chromium; fail if content overflows")
    parser.add_argument("--png", action="append", default=[], metavar="DECK:N,M",
                        help="also screenshot slides N, M of DECK into slides/build/png/")
    args = parser.parse_args(argv)

    all_decks = find_decks()
    decks = [p.resolve() for p in args.decks] or all_decks
    browser = find_chromium()
    problems: list[str] = []
    for deck in decks:
        try:
            out = render_deck(deck, decks=all_decks)
        except BrokenLinkError as e:
            problems.append(str(e))
            continue
        done = [str(out.relative_to(Path.cwd()) if out.is_relative_to(Path.cwd()) else out)]
        if browser and not args.no_pdf:
            print_pdf(out, out.with_suffix(".pdf"))
            done.append("pdf")
        if args.check:
            if browser is None:
                problems.append("--check needs Chromium")
            else:
                problems += overflowing_slides(out)
        print(" + ".join(done))
    for spec in args.png:
        deck_name, _, numbers = spec.rpartition(":")
        deck = Path(deck_name).resolve()
        out = BUILD_DIR / deck.relative_to(SLIDES_DIR).with_suffix(".html")
        for n in numbers.split(","):
            stem = deck.relative_to(SLIDES_DIR).with_suffix("").as_posix().replace("/", "_")
            png = BUILD_DIR / "png" / f"{stem}_{int(n):02d}.png"
            png.parent.mkdir(parents=True, exist_ok=True)
            screenshot(out, int(n), png)
            print(png)
    if browser is None and not args.no_pdf:
        print("no Chromium: HTML only (install Debian's `chromium` or set CHROME_PATH for PDF)")
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
