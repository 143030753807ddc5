"""The gate's result cache (`tasks/gate/result_cache.py`): what it is keyed by, and what a hit hands back.
The CLI's reuse (and that Great Expectations is not imported then) is in test_local_server.py."""

import json

from tasks.gate.expectations import run_gate
from tasks.gate.pixel_stats import pixel_stats
from tasks.gate.result_cache import cached_gate, gate_key, keep_gate
from tasks.gate.suite import load_suite
from tests.test_gate import clean_dataset, leak


def test_the_key_follows_the_data_the_suite_s_content_and_the_classes_not_the_suite_s_path(tmp_path):
    suite = load_suite()
    copy = tmp_path / "copy.toml"
    copy.write_text(open(suite["path"]).read())
    edited = tmp_path / "edited.toml"
    edited.write_text(open(suite["path"]).read().replace("max_ratio = ", "max_ratio = 1", 1))
    key = gate_key("abc", suite, ["a", "b"])
    assert gate_key("abc", load_suite(copy), ["a", "b"]) == key
    assert gate_key("abd", suite, ["a", "b"]) != key
    assert gate_key("abc", load_suite(edited), ["a", "b"]) != key
    assert gate_key("abc", suite, ["a", "c"]) != key


def test_a_kept_result_comes_back_whole_with_its_data_docs_in_the_new_run(tmp_path):
    data = clean_dataset()
    leak(data)
    suite = load_suite()
    result = run_gate(pixel_stats(data), data.class_names, suite, tmp_path / "run1" / "data_docs")
    entry = tmp_path / "cache" / gate_key("f", suite, data.class_names)
    assert cached_gate(entry, tmp_path / "run2" / "data_docs", suite) is None  # nothing kept yet
    keep_gate(entry, result, tmp_path / "run1" / "data_docs")
    again = cached_gate(entry, tmp_path / "run2" / "data_docs", suite)
    assert again.checks == result.checks and again.status == "fail" == result.status
    assert again.data_docs == str(tmp_path / "run2" / "data_docs" / "index.html")
    pages = sorted(p.relative_to(tmp_path / "run1") for p in (tmp_path / "run1").rglob("*.html"))
    assert pages == sorted(p.relative_to(tmp_path / "run2") for p in (tmp_path / "run2").rglob("*.html"))

    (entry / "gate.json").write_text(json.dumps({"status": "pass"}))  # damaged: validated again, not trusted
    assert cached_gate(entry, tmp_path / "run3" / "data_docs", suite) is None
