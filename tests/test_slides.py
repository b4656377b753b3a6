"""The lecture slides (`slides/`): every deck renders to HTML with no missing image or broken
relative link, every figure comes from `scripts/make_figures.py`, the captured terminal output
is filled in, and every command shown on a slide works.

Commands are the ```bash blocks of the decks; the tag after `bash` says how to check them
(`slides/render.py` lists the tags):

- no tag: runs on a CPU in seconds; run here from the repository root, must exit 0;
- `client`: sent to a server started here from the deck's first `server` block (the embedded
  SmolLM2 model), with `localhost:8000` pointed at that server; must exit 0 and answer no
  OpenAI error envelope;
- `server`, `gpu`, `slow`: not run; `python -m minivllm.server` lines must pass the server's
  own flag parser, and any other `python -m MODULE` must name an existing module.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
SLIDES = ROOT / "slides"
LECTURES = ["L0_why_serving.md", "L1_kv_cache_block_tables.md",
            "L2_triton_paged_attention.md", "L3_continuous_batching.md",
            "L4_openai_server.md", "L5_extensions_performance.md", "zh/L4_openai_server.md"]


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


render = _load("slides_render", SLIDES / "render.py")
DECKS = render.find_decks()
BLOCKS = [b for deck in DECKS for b in render.code_blocks(render.parse_deck(deck))
          if b.lang == "bash"]


def _blocks(*tags: str) -> list:
    return [pytest.param(b, id=f"{b.name}:{b.tag or 'cpu'}:{i}")
            for i, b in enumerate(BLOCKS) if b.tag in tags]


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))


def _commands(text: str) -> list[list[str]]:
    """The simple commands of a block: continuation lines joined, comments and
    environment assignments (`CUDA_VISIBLE_DEVICES=0 python ...`) dropped."""
    out = []
    for line in re.sub(r"\\\n", " ", text).splitlines():
        argv = shlex.split(line, comments=True)
        while argv and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", argv[0]):
            argv.pop(0)
        if argv:
            out.append(argv)
    return out


# -- rendering ---------------------------------------------------------------------------------
def test_every_lecture_has_a_deck() -> None:
    assert sorted(d.relative_to(SLIDES).as_posix() for d in DECKS) == sorted(LECTURES)


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.urls.append(value)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[Path, Path]:
    """Every deck rendered into one folder (decks link to each other)."""
    out = tmp_path_factory.mktemp("slides-html")
    return {deck: render.render_deck(deck, decks=DECKS, out_root=out) for deck in DECKS}


@pytest.mark.parametrize("deck", DECKS, ids=lambda d: d.relative_to(SLIDES).as_posix())
def test_deck_renders_with_every_link_and_image_present(deck: Path,
                                                        rendered: dict[Path, Path]) -> None:
    page = rendered[deck]
    html = page.read_text(encoding="utf-8")
    assert html.count('<section class="slide') == len(render.parse_deck(deck).slides) >= 8
    parser = _Links()
    parser.feed(html)
    local = [u for u in parser.urls if not re.match(r"[a-z]+:|#|/", u)]
    assert any(u.endswith(".png") for u in local), "a lecture without a single figure"
    missing = [u for u in local if not (page.parent / u.split("#")[0]).exists()]
    assert not missing, f"{deck.name}: broken links or images: {missing}"
    assert "(filled in by" not in html, "run python scripts/make_figures.py (captures)"


def test_a_missing_image_fails_the_render(tmp_path: Path) -> None:
    deck = tmp_path / "deck.md"
    deck.write_text("---\nmarp: true\n---\n\n# One\n\n![w:100](figures/nope.png)\n\n---\n\n"
                    "# Two\n\n[the lab](../labs/nope.md)\n", encoding="utf-8")
    with pytest.raises(render.BrokenLinkError, match=r"slide 1: figures/nope\.png(?s:.*)"
                                                     r"slide 2: \.\./labs/nope\.md"):
        render.render_deck(deck, decks=[], out_root=tmp_path / "out")


def test_directives_notes_and_tags_are_parsed(tmp_path: Path) -> None:
    deck = tmp_path / "deck.md"
    deck.write_text("---\nmarp: true\npaginate: true\n---\n\n<!-- _class: lead -->\n# A\n\n"
                    "<!-- say this -->\n\n---\n\n# B\n\n```bash client\ncurl x\n```\n\n"
                    "```text\n---\n```\n", encoding="utf-8")
    parsed = render.parse_deck(deck)
    assert len(parsed.slides) == 2  # the `---` inside a code block does not split
    assert parsed.slides[0].classes == ["lead"] and parsed.slides[1].classes == []
    assert parsed.slides[0].notes == ["say this"] and parsed.slides[1].paginate
    blocks = render.code_blocks(parsed)
    assert [(b.lang, b.tags, b.slide) for b in blocks] == [("bash", ["client"], 2),
                                                           ("text", [], 2)]


def test_every_figure_comes_from_the_figure_script() -> None:
    make_figures = _load("make_figures", ROOT / "scripts" / "make_figures.py")
    used = set()
    for deck in DECKS:
        used |= set(re.findall(r"figures/(\w+)\.png", deck.read_text(encoding="utf-8")))
    assert used, "no figures used"
    unknown = used - set(make_figures.FIGURES)
    assert not unknown, f"figures not made by scripts/make_figures.py: {unknown}"
    for name in used:
        assert (SLIDES / "figures" / f"{name}.png").exists(), f"run scripts/make_figures.py: {name}"


def test_every_bash_block_has_a_known_tag() -> None:
    unknown = [f"{b.name}: bash {b.tag}" for b in BLOCKS if b.tag not in render.TAGS]
    assert not unknown


# -- the commands on the slides --------------------------------------------------------------
@pytest.mark.parametrize("block", _blocks(""))
def test_cpu_command_runs(block) -> None:
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", block.text], cwd=ROOT,
                            env=_env(), capture_output=True, text=True, timeout=180,
                            check=False)
    assert result.returncode == 0, f"{block.name}:\n{block.text}\n{result.stdout}\n{result.stderr}"


@pytest.mark.parametrize("block", _blocks("server", "gpu", "slow"))
def test_server_and_gpu_commands_are_valid(block) -> None:
    from minivllm.server.cli_args import parse_args

    for argv in _commands(block.text):
        assert argv[:2] == ["python", "-m"], f"{block.name}: not a python -m command: {argv}"
        if argv[2] == "minivllm.server":
            try:
                parse_args(argv[3:])
            except SystemExit as e:
                pytest.fail(f"{block.name}: python -m minivllm.server rejects {argv[3:]}: {e}")
        else:
            assert importlib.util.find_spec(argv[2]) is not None, f"no module {argv[2]}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Servers:
    """Servers started from `bash server` blocks, one per distinct command, for the module."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.running: dict[str, tuple[subprocess.Popen, int, Path]] = {}

    def port_for(self, command: str) -> int:
        if command not in self.running:
            argv = _commands(command)[0][3:]
            if "--port" in argv:
                del argv[argv.index("--port"):argv.index("--port") + 2]
            port = _free_port()
            log = self.log_dir / f"server{len(self.running)}.log"
            with log.open("w") as out:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "minivllm.server", *argv, "--port", str(port)],
                    cwd=ROOT, env=_env(), stdout=out, stderr=subprocess.STDOUT)
            self.running[command] = (proc, port, log)
            deadline = time.monotonic() + 180
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"the server exited: {command}\n{log.read_text()}")
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                        break
                except (urllib.error.URLError, OSError):
                    if time.monotonic() > deadline:
                        pytest.fail(f"the server did not start: {command}\n{log.read_text()}")
                    time.sleep(0.5)
        return self.running[command][1]

    def stop(self) -> None:
        for proc, _, _ in self.running.values():
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory):
    started = _Servers(tmp_path_factory.mktemp("slide-servers"))
    yield started
    started.stop()


@pytest.mark.parametrize("block", _blocks("client"))
def test_client_command_against_the_server(block, servers: _Servers) -> None:
    deck_servers = [b for b in BLOCKS if b.deck == block.deck and b.tag == "server"]
    assert deck_servers, f"{block.name}: a client block in a deck without a server block"
    port = servers.port_for(deck_servers[0].text)
    command = re.sub(r"\b(localhost|127\.0\.0\.1):8000\b", f"127.0.0.1:{port}", block.text)
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=ROOT, env=_env(),
                            capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, f"{block.name}:\n{command}\n{result.stdout}\n{result.stderr}"
    assert result.stdout.strip(), f"{block.name}: printed nothing"
    assert '"error"' not in result.stdout, f"{block.name}: {result.stdout}"


def test_figures_read_the_record_of_their_own_benchmark(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """`decode_step*.json` also matches the A/B records, which the decode figures cannot read."""
    make_figures = _load("make_figures", ROOT / "scripts" / "make_figures.py")
    monkeypatch.setattr(make_figures, "RESULTS", tmp_path)
    for name, benchmark, date in (("decode_step_gpu", "decode_step", "2026-12-01"),
                                  ("decode_step_ab_gpu", "decode_step_ab", "2026-12-07")):
        (tmp_path / f"{name}.json").write_text(json.dumps(
            {"benchmark": benchmark, "device": "cuda", "date": date}))
    record, path = make_figures.load_result("decode_step")
    assert path.name == "decode_step_gpu.json" and record["benchmark"] == "decode_step"
