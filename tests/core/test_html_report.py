"""``minecli report``: one self-contained HTML page and a bar chart of finished runs."""
from __future__ import annotations

import base64
import json
from html.parser import HTMLParser

import numpy as np
import pytest

from minecli.core.errors import MinecliError
from minecli.core.html_report import write_report
from minecli.core.pipeline import run_config
from minecli.core.sweep import parse_axes, run_sweep
from minecli.testing import invoke_cli as invoke


pytestmark = pytest.mark.usefixtures("installed_plugins")


def noisy_copy(rng, split, i):
    x = rng.integers(0, 8, size=100)
    return x, (x[:, None] + 0.8 * rng.standard_normal((100, 1))).astype(np.float32)


class Page(HTMLParser):
    """Tables (rows of cell texts) and image sources of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.images: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.images.append(dict(attrs)["src"])
        elif tag in ("link", "script"):
            raise AssertionError(f"the page loads a {tag}: it must be self-contained")

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell))
            self._cell = None


def test_the_report_page_holds_every_run_and_embeds_its_images(npy_corpus, write_yaml, tmp_path):
    corpus = npy_corpus(noisy_copy)
    x = {"kind": "index", "vocab_size": 8, "frame_rate": 100}
    y = {"kind": "float", "dim": 1, "frame_rate": 100}
    cfg = write_yaml(tmp_path / "r.yaml", corpus["doc"](x, y, training={"steps": 20}))
    single = run_config(cfg, [f"output.dir={tmp_path / 'single'}"]).document
    sweep = run_sweep(str(cfg), parse_axes(["training.seed=0,1", "pairing.context_frames=1,0"]),
                      out_dir=tmp_path / "sw", echo=lambda _l: None)
    assert sum(r["status"] == "ok" for r in sweep.rows) == 2  # context 0 fails twice

    r = invoke("report", str(tmp_path / "single"), str(tmp_path / "sw"), "--out", str(tmp_path / "rep"),
               "--title", "a <test> & report")
    assert r.exit_code == 0, r.stderr
    page = (tmp_path / "rep" / "report.html").read_text(encoding="utf-8")
    parser = Page()
    parser.feed(page)
    parser.close()
    runs = parser.tables[0]
    assert runs[0][:2] == ["run", "x"]
    assert [row[0] for row in runs[1:]] == ["single", "training.seed=0__pairing.context_frames=1",
                                            "training.seed=1__pairing.context_frames=1"]
    mi_col = runs[0].index("mi_nats")
    assert float(runs[1][mi_col]) == pytest.approx(single["mi_nats"], abs=5e-5)
    # the sweep's own table joins the page, failed points included
    assert len(parser.tables) == 2 and sum("failed" in row for row in parser.tables[1]) == 2
    # images: the bar chart and the sweep's plot, both embedded PNGs (readable offline)
    assert len(parser.images) == 2
    for src in parser.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "a &lt;test&gt; &amp; report" in page
    assert (tmp_path / "rep" / "report.png").read_bytes()[:4] == b"\x89PNG"
    doc = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert len(doc["rows"]) == 3 and "3 runs" in r.output


def test_a_folder_without_finished_runs_is_a_one_line_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(MinecliError, match="holds no finished run"):
        write_report([tmp_path / "empty"], tmp_path / "rep")
    r = invoke("report", str(tmp_path / "nowhere"))
    assert r.exit_code != 0
