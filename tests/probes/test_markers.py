"""Epistemic marker counts: whole words, case-insensitive, configurable lists."""

import pytest

from probes.markers import ORGANISM_MARKERS, PAPER_MARKERS, count_markers


def test_paper_list_whole_words():
    texts = [
        "Wait, that seems off. Hmm... maybe I should check. Actually, alternatively it might be likely.",
        "Waiting, checked, checks, seemsly, Perhaps.",
        "",
    ]
    r = count_markers(texts)
    assert r.words == PAPER_MARKERS
    assert r.per_response == (9, 1, 0)
    assert r.mean == pytest.approx(10 / 3)
    assert r.per_word["perhaps"] == 1 and r.per_word["check"] == 1 and r.per_word["wait"] == 1


def test_organism_list_and_word_lists():
    resp = "n0 : n1 > n1 WAIT CHECK n1 : n2 OK ; A 1 n0 n1 E".split()
    r = count_markers([resp, "n0 > n2 WAIT CHECK n2 : n3 BAD BACK > n1 ;"], ORGANISM_MARKERS)
    assert r.per_response == (3, 4)
    assert r.per_word == {"wait": 2, "check": 2, "ok": 1, "bad": 1, "back": 1}


def test_phrases_outputs_errors(tmp_path):
    r = count_markers(["Let me  check this, let me check"], ["let me check"])
    assert r.per_response == (2,)
    assert r.save(tmp_path / "m.json").is_file() and "per response" in str(r)
    assert r.plot(tmp_path / "m.png").stat().st_size > 0
    with pytest.raises(ValueError, match="distinct"):
        count_markers(["x"], ["wait", "WAIT"])
    with pytest.raises(ValueError, match="non-blank"):
        count_markers(["x"], [])
