"""Progress bars: on a terminal only, on stderr only, never in outputs (astropipe.progress)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import requests
from pytest_httpserver import HTTPServer

from astropipe.progress import CI_VARIABLES, bar, wanted
from astropipe.sources.http import download


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def no_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in CI_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_auto_is_on_for_a_terminal_only(no_ci, monkeypatch: pytest.MonkeyPatch) -> None:
    assert wanted(None, stream=_Tty()) is True
    assert wanted(None, stream=io.StringIO()) is False  # redirected: no bar
    monkeypatch.setenv("CI", "true")
    assert wanted(None, stream=_Tty()) is False  # CI runners may allocate a TTY: still no bar
    monkeypatch.setenv("CI", "")
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    assert wanted(None, stream=_Tty()) is False


def test_an_explicit_flag_wins(no_ci, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    assert wanted(True, stream=io.StringIO()) is True
    assert wanted(False, stream=_Tty()) is False


def test_a_closed_stream_means_no_bar(no_ci) -> None:
    closed = _Tty()
    closed.close()
    assert wanted(None, stream=io.StringIO()) is False
    assert wanted(None, stream=object()) is False  # type: ignore[arg-type]


def test_bar_draws_on_stderr_only_when_enabled(capsys) -> None:
    assert list(bar(range(3), enabled=True, desc="frames", unit="frame")) == [0, 1, 2]
    out, err = capsys.readouterr()
    assert out == "" and "frames" in err and "3/3" in err
    assert list(bar(range(3), enabled=False, desc="frames")) == [0, 1, 2]
    assert capsys.readouterr() == ("", "")


def test_download_bar_leaves_the_file_and_digest_alone(
    httpserver: HTTPServer, tmp_path: Path, capsys
) -> None:
    body = bytes(range(256)) * 4096  # 1 MiB
    httpserver.expect_request("/file.fits").respond_with_data(body, content_type="image/fits")
    session = requests.Session()
    url = httpserver.url_for("/file.fits")
    quiet = download(session, url, tmp_path / "a.fits", timeout=(5.0, 5.0))
    assert capsys.readouterr().err == ""
    shown = download(session, url, tmp_path / "b.fits", timeout=(5.0, 5.0), progress=True)
    out, err = capsys.readouterr()
    assert shown == quiet and (tmp_path / "a.fits").read_bytes() == body
    assert (tmp_path / "b.fits").read_bytes() == body
    assert "b.fits" in err and "1.05M" in err and out == ""
    assert json.dumps(shown)  # the digest is a plain string, no bar text in it
