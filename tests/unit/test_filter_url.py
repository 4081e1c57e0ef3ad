"""URL filter: UT1 block lists (files, folders, gzip, tar.gz) and FineWeb's banned words."""

from __future__ import annotations

import gzip
import io
import tarfile

import pytest

from llmtool.data.filters.url import UrlFilter, load_blocklists, normalise_url
from llmtool.errors import BadInputError


def test_words_only_by_default():
    f = UrlFilter()
    assert f.check("https://news.example.com/world/2024/story.html") is None
    assert f.check("https://example.com/free-porn-videos") == "banned_word"
    assert f.check("https://bigtits.example.com/") == "banned_subword"
    assert f.check("https://example.com/FREE-PORN") == "banned_word"  # case does not hide a word


def test_soft_words_need_two():
    f = UrlFilter()
    assert f.check("https://example.com/sexy") is None
    assert f.check("https://example.com/sexy-babes") == "soft_banned_words"


def test_domains_block_their_subdomains_and_urls_match_loosely():
    f = UrlFilter(domains={"bad.example"}, urls={normalise_url("http://ok.example/page/")})
    assert f.check("https://bad.example/") == "domain"
    assert f.check("https://a.b.bad.example:8080/x") == "domain"
    assert f.check("https://notbad.example/") is None
    assert f.check("https://www.ok.example/page") == "url"
    assert f.check("https://ok.example/other") is None


def test_ut1_folder_gzip_and_tarball(tmp_path):
    cat = tmp_path / "blacklists" / "adult"
    cat.mkdir(parents=True)
    (cat / "domains").write_text("# comment\nbad.example\n\n")
    (cat / "urls.gz").write_bytes(gzip.compress(b"good.example/evil\n"))
    domains, urls = load_blocklists([str(tmp_path / "blacklists")])
    assert domains == {"bad.example"} and urls == {"good.example/evil"}
    tar_path = tmp_path / "lists.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        for name, data in (("bl/gambling/domains", b"casino.example\n"), ("bl/gambling/urls", b"x.example/a\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    domains, urls = load_blocklists([str(tar_path)])
    assert domains == {"casino.example"} and urls == {"x.example/a"}
    plain = tmp_path / "my-list.txt"
    plain.write_text("one.example\ntwo.example/path\n")
    assert load_blocklists([str(plain)]) == ({"one.example"}, {"two.example/path"})


def test_bad_blocklists_are_input_errors(tmp_path):
    with pytest.raises(BadInputError, match="no such"):
        load_blocklists([str(tmp_path / "missing")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInputError, match="no UT1"):
        load_blocklists([str(tmp_path / "empty")])


def test_fineweb_list_from_datatrove_loads_and_blocks():
    """The very tarball FineWeb used (shipped in datatrove's assets), when installed."""
    pytest.importorskip("datatrove")
    from datatrove.utils._import_utils import ASSETS_PATH

    domains, urls = load_blocklists([f"{ASSETS_PATH}/url_filterblacklistsv0_3_0.tar.gz"])
    assert len(domains) > 100_000
    f = UrlFilter(domains, urls)
    some = sorted(domains)[len(domains) // 2]
    assert f.check(f"https://{some}/index.html") == "domain"
    assert f.check("https://en.wikipedia.org/wiki/Bread") is None
