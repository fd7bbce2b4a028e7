"""The Snakemake report: built by the integration run, opened in headless Chromium."""

import pytest

from browser import CHROMIUM, open_page
from integration_helpers import snakemake

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian package chromium)")


def test_browser_check_catches_errors(tmp_path):
    """The check itself can fail: a page with a script error reports it."""
    page = tmp_path / "bad.html"
    page.write_text("<html><body><script>console.error('boom'); notAFunction();</script><p>x</p></body></html>")
    result = open_page(page.as_uri(), settle_s=1.0)
    assert any("boom" in e for e in result["errors"])
    assert any("notAFunction" in e for e in result["errors"])


def test_report_renders_without_console_errors(run):
    workdir, _ = run
    report = workdir / "results" / "report.html"
    snakemake(workdir, "--report", str(report))
    assert report.stat().st_size > 100_000
    result = open_page(report.as_uri())
    assert result["errors"] == []
    assert "Snakemake" in result["title"]
    for text in ("Latent correlation", "Metrics", "Embeddings", "Training"):
        assert text in result["text"], text
