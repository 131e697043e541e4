"""Tests of nrl_launch.experiment.manifest: contents, the append format, the typed views, stale_reasons.

``reference/manifests/`` holds manifests written by the code before the
manifest was typed (commit 732b700; ``written_by_732b700.py.txt`` is the
script that wrote them) with what that code's ``read_manifest`` returned
(``*.read.json``): the typed reader must read them the same, and write the
whole-file ones back byte for byte.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

import nrl_launch
from nrl_launch.errors import SnapshotError
from nrl_launch.experiment import manifest as manifest_mod
from nrl_launch.experiment import yamlsubset
from nrl_launch.experiment.manifest import (
    MANIFEST_NAME,
    Cancellation,
    Manifest,
    OtherEntry,
    RetryOrigin,
    Run,
    SnapshotStats,
    Source,
    append_run,
    build_manifest,
    entry_field_line,
    parse_manifest,
    read_manifest,
    render_manifest,
    write_manifest,
)
from nrl_launch.experiment.snapshot import SnapshotBatch
from testkit import REPO, copy_tree, finish, git, wait_for_file, write

REFERENCE = Path(__file__).parent / "reference" / "manifests"

WHEN = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)


@pytest.fixture
def dirty_tree(tree_template: Path, tmp_path: Path) -> Path:
    """A tree with a submodule and uncommitted edits in both repositories."""
    top = copy_tree(tree_template, tmp_path)
    write(top / "README.md", "edited\n")
    write(top / "third_party/sub/sub.txt", "edited in the submodule\n")
    return top


def manifest_for(root: Path, **kwargs) -> Manifest:
    """build_manifest for the working tree at ``root``."""
    from nrl_launch.experiment.gitrepo import find_repo

    return build_manifest(find_repo(root), config_values={"NUM_NODES": "2", "NUM_MINUTES": "30"},
                          gpu_hours=8, experiment="exp1", script="tests/test_suites/llm/exp1.sh",
                          created=WHEN, **kwargs)


def test_manifest_contents_dirty_tree_with_submodule(dirty_tree: Path, tmp_path: Path) -> None:
    from nrl_launch.experiment.gitrepo import list_tracked_files

    batch = SnapshotBatch(dirty_tree, list_tracked_files(dirty_tree))
    dest = tmp_path / "snaps/exp1"
    result = batch.ensure(dest, manifest=manifest_for(dirty_tree))
    data = read_manifest(dest)
    assert list(yaml.safe_load((dest / MANIFEST_NAME).read_text()))[-1] == "runs" and data.entries == ()
    assert data.experiment == "exp1"
    assert data.created == "2026-01-02T03:04:05+00:00"
    assert data.launcher_version == nrl_launch.__version__
    source = data.source
    assert source is not None
    assert source.repository == str(dirty_tree.resolve())
    assert source.commit == git(dirty_tree, "rev-parse", "HEAD").strip()
    assert source.subject == "Add: the first version (with a sub-module)!"
    assert source.dirty is True
    assert source.dirty_files == ("README.md", "third_party/sub/sub.txt")
    submodules = dict(source.submodules or ())
    assert set(submodules) == {"third_party/sub", "third_party/sub/deps/nested"}
    assert submodules["third_party/sub"] == git(dirty_tree / "third_party/sub", "rev-parse", "HEAD").strip()
    assert data.snapshot == SnapshotStats(result.mode_used, result.files, result.bytes)
    assert data.config_values == {"NUM_NODES": "2", "NUM_MINUTES": "30"}
    assert data.gpu_hours == 8


def test_file_ends_with_bare_runs_line(tmp_path: Path) -> None:
    write_manifest(tmp_path, Manifest("x"))
    text = (tmp_path / MANIFEST_NAME).read_text()
    assert text.endswith("\nruns:\n")
    assert yaml.safe_load(text)["runs"] is None
    assert read_manifest(tmp_path).entries == ()


def test_append_run_and_shell_append(tmp_path: Path) -> None:
    write_manifest(tmp_path, Manifest("x"))
    before = (tmp_path / MANIFEST_NAME).read_text()
    append_run(tmp_path, "123", "1/3", when=WHEN)
    assert (tmp_path / MANIFEST_NAME).read_text().startswith(before)  # appended, not rewritten
    append_run(tmp_path, 124, "2/3", via="continue.sh", when="2026-01-02T04:00:00+00:00")
    subprocess.run(["bash", "-c", "printf '%s\\n' \"- job_id: '125'\" \"  submitted_at: "
                    "'2026-01-02T05:00:00+00:00'\" \"  run: 3/3\" \"  via: continue.sh\" >> " + MANIFEST_NAME],
                   cwd=tmp_path, check=True)
    # an unquoted id and timestamp written by hand still read back as strings
    with open(tmp_path / MANIFEST_NAME, "a") as handle:
        handle.write("- job_id: 126\n  submitted_at: 2026-01-02T06:00:00Z\n  run: 4/3\n  via: continue.sh\n")
    runs = read_manifest(tmp_path).runs
    assert runs[0] == Run("123", "1/3", "launcher", "2026-01-02T03:04:05+00:00")
    assert runs[1] == Run("124", "2/3", "continue.sh", "2026-01-02T04:00:00+00:00")
    assert runs[2].job_id == "125" and runs[2].run == "3/3"
    assert runs[3].job_id == "126" and runs[3].submitted_at == "2026-01-02T06:00:00+00:00"
    assert read_manifest(tmp_path).experiment == "x"


def test_written_runs_stay_appendable(tmp_path: Path) -> None:
    manifest = Manifest("a", entries=(Run("1", "1/2", "launcher", "t"),))
    text = render_manifest(manifest)
    assert text.endswith("runs:\n- job_id: '1'\n  submitted_at: t\n  run: 1/2\n  via: launcher\n")
    write_manifest(tmp_path, manifest)
    append_run(tmp_path, "2", "2/2", when=WHEN)
    assert [r.job_id for r in read_manifest(tmp_path).runs] == ["1", "2"]


def test_append_run_without_trailing_newline(tmp_path: Path) -> None:
    (tmp_path / MANIFEST_NAME).write_text("experiment: x\nruns:")
    append_run(tmp_path, "7", "1/1", when=WHEN)
    assert read_manifest(tmp_path).runs[0].job_id == "7"


def test_append_run_errors(tmp_path: Path) -> None:
    with pytest.raises(SnapshotError, match="no manifest"):
        append_run(tmp_path, "1", "1/1")
    write_manifest(tmp_path, Manifest())
    with pytest.raises(SnapshotError, match="invalid run origin"):
        append_run(tmp_path, "1", "1/1", via="cron")


def test_read_manifest_missing_or_corrupt(tmp_path: Path) -> None:
    with pytest.raises(SnapshotError, match=str(tmp_path / MANIFEST_NAME)):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text("a: [unclosed\n")
    with pytest.raises(SnapshotError, match="corrupt manifest"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text("- just a list\n")
    with pytest.raises(SnapshotError, match="not a mapping"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text("runs: 5\n")
    with pytest.raises(SnapshotError, match="'runs' is not a list"):
        read_manifest(tmp_path)


def test_stale_reasons(dirty_tree: Path) -> None:
    from nrl_launch.experiment.gitrepo import find_repo

    info = find_repo(dirty_tree)
    manifest = manifest_for(dirty_tree)
    assert manifest.stale_reasons(info) == []

    other = replace(info, dirty_files=("README.md",))
    [reason] = manifest.stale_reasons(other)
    assert "uncommitted changes differ" in reason and info.head_sha[:12] in reason

    clean = replace(info, dirty_files=())
    [reason] = manifest.stale_reasons(clean)
    assert "had uncommitted changes" in reason and "is clean" in reason

    git(dirty_tree, "commit", "-q", "-am", "second")
    moved = find_repo(dirty_tree)
    reasons = manifest.stale_reasons(moved)
    assert any(info.head_sha[:12] in r and moved.head_sha[:12] in r for r in reasons)


def test_stale_reasons_submodule_commit(dirty_tree: Path) -> None:
    from nrl_launch.experiment.gitrepo import find_repo

    info = find_repo(dirty_tree)
    manifest = manifest_for(dirty_tree)
    moved = replace(info, submodules={**info.submodules, "third_party/sub": "f" * 40})
    [reason] = manifest.stale_reasons(moved)
    assert reason.startswith("submodule third_party/sub was at")
    # an adopted snapshot's manifest claims no code; one without a source section neither
    assert manifest.adopted().stale_reasons(info) == [
        "its commit is unknown (it was made without a manifest, e.g. by the bash launcher)"]
    assert Manifest().stale_reasons(info) == ["the snapshot's manifest has no source section"]


# One writer process: waits for the "go" file, then records COUNT runs.
APPENDER = """
import sys, time
from pathlib import Path
from nrl_launch.experiment.manifest import append_run
folder, worker, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
(folder / f"ready-{worker}").touch()
while not (folder / "go").exists():
    time.sleep(0.001)
for i in range(count):
    append_run(folder, f"{worker}{i:04d}", f"{i + 1}/{count}")
"""


def test_concurrent_appends_lose_no_entry(tmp_path: Path) -> None:
    # 4 processes x 150 runs, all at once: each entry is one O_APPEND write.
    write_manifest(tmp_path, Manifest("x"))
    env = {**os.environ, "PYTHONPATH": str(REPO / "tools")}
    procs = [subprocess.Popen([sys.executable, "-c", APPENDER, str(tmp_path), str(worker), "150"], env=env,
                              text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for worker in range(1, 5)]
    for worker in range(1, 5):
        wait_for_file(tmp_path / f"ready-{worker}")
    (tmp_path / "go").touch()
    assert [finish(proc)[0] for proc in procs] == [0] * 4
    recorded = [run.job_id for run in read_manifest(tmp_path).runs]
    assert sorted(recorded) == sorted(f"{worker}{i:04d}" for worker in range(1, 5) for i in range(150))


def test_timestamps_are_iso_8601_utc_with_an_offset(tmp_path: Path) -> None:
    write_manifest(tmp_path, Manifest("x"))
    append_run(tmp_path, "1", "1/1")
    append_run(tmp_path, "2", "2/2", when=dt.datetime(2026, 1, 2, 4, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=1))))
    first, second = read_manifest(tmp_path).runs
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", first.submitted_at)
    assert second.submitted_at == "2026-01-02T03:04:05+00:00"  # converted to UTC


def test_append_run_keeps_non_utf8_text_readable(tmp_path: Path) -> None:
    write_manifest(tmp_path, Manifest("x"))
    append_run(tmp_path, "1", "1/1", base_log_dir="/logs/caf\udce9")  # b"caf\xe9" from the environment
    append_run(tmp_path, "2", "2/2", base_log_dir="/logs/a\x85b")  # NEL: a line break to YAML
    (tmp_path / MANIFEST_NAME).read_bytes().decode("utf-8")  # still UTF-8 text
    assert [run.base_log_dir for run in read_manifest(tmp_path).runs] == ["/logs/caf\udce9", "/logs/a\x85b"]


# ---------------------------------------------------------------- manifests of the previous code


def reference(name: str) -> tuple[Path, str]:
    path = REFERENCE / f"{name}.yaml"
    return path, path.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", ["full", "adopted", "rendered"])
def test_a_manifest_written_by_the_previous_code_reads_the_same(name: str) -> None:
    # full: launcher runs, continue.sh's printf-appended entry, retries, a cancellation, a relaunch;
    # adopted: a snapshot reused without manifest; rendered: keys the previous code did not define
    path, text = reference(name)
    expected = json.loads((REFERENCE / f"{name}.read.json").read_text())
    assert json.loads(json.dumps(parse_manifest(text, path).to_data())) == expected


@pytest.mark.parametrize("name", ["adopted", "rendered"])
def test_a_whole_manifest_is_written_back_byte_for_byte(name: str) -> None:
    path, text = reference(name)
    assert render_manifest(parse_manifest(text, path)) == text


def test_a_manifest_with_appended_entries_is_written_back_reading_the_same() -> None:
    # continue.sh writes 'via: "continue.sh"' (one quoted line per field): rewritten, the entry
    # reads the same, and everything before "runs:" is the previous code's text byte for byte
    path, text = reference("full")
    read = parse_manifest(text, path)
    again = render_manifest(read)
    assert parse_manifest(again, path) == read
    assert again.split("\nruns:\n")[0] == text.split("\nruns:\n")[0]


def test_unknown_keys_survive_a_rewrite(tmp_path: Path) -> None:
    path, text = reference("rendered")
    read = parse_manifest(text, path)
    assert read.extra == (("launches", [{"stamp": "260102-030405", "planned": 2}]),)
    assert read.source is not None and read.source.extra == (("origin_url", "git@example.com:RL.git"),)
    assert read.runs[0].extra == () and read.runs[0].token == "a1b2"  # (a key this version knows, since)
    assert read.entries[-1] == OtherEntry((("note", "an entry of another kind"),))
    write_manifest(tmp_path, read.with_snapshot("copy", 1, 2))
    append_run(tmp_path, "1236", "3", via="continue.sh", when=WHEN)
    rewritten = read_manifest(tmp_path)
    assert (rewritten.extra, rewritten.source, rewritten.entries[:-1]) == (read.extra, read.source, read.entries)
    assert rewritten.snapshot == SnapshotStats("copy", 1, 2)


@pytest.mark.parametrize("name", ["full", "adopted", "rendered"])
def test_continue_sh_numbers_its_run_as_the_manifest_does(name: str) -> None:
    # continue.sh: run=$(( $(grep -c '^- job_id:' "$MANIFEST" || true) + 1 )); cancellations and
    # entries of other kinds are no runs for either
    path, text = reference(name)
    counted = subprocess.run(["grep", "-c", "^- job_id:", str(path)], capture_output=True, text=True).stdout
    assert int(counted) + 1 == parse_manifest(text, path).next_run_number


def test_runs_launches_retries_and_cancellations() -> None:
    path, text = reference("full")
    read = parse_manifest(text, path)
    assert [run.job_id for run in read.runs] == ["1234", "1235", "1300", "1301", "1400", "1401"]
    assert read.runs[1].base_log_dir == "/logs/caf\udce9 'x'\n"
    assert read.runs[2] == Run("1300", "3", "continue.sh", "2026-01-03T00:00:00+00:00")
    assert [launch.job_ids for launch in read.launches] == [["1234", "1235", "1300", "1301"], ["1400", "1401"]]
    assert read.latest_launch.job_ids == ["1400", "1401"]
    assert [(run.job_id, run.retry) for run in read.retries] == [
        ("1301", RetryOrigin("1300", "NODE_FAIL", "node[1-2]", "node2")),
        ("1401", RetryOrigin("1400", "PREEMPTED", ""))]
    assert read.cancellations == (Cancellation(("1301",), "2026-01-03T02:00:00+00:00"),)
    assert read.next_run_number == 7  # the cancellation is no run


def L(label: str) -> Run:  # a launcher run, for the table below
    return Run(label, label, "launcher")


def C(number: str) -> Run:  # a continue.sh run
    return Run(number, number, "continue.sh")


@pytest.mark.parametrize(("entries", "launches"), [
    ((), []),
    ((C("1"), C("2")), [["1", "2"]]),  # continue.sh after `nrl-launch snapshot`: no launcher run
    ((L("1/2"), L("2/2"), C("3")), [["1/2", "2/2", "3"]]),
    ((C("1"), L("1/1"), C("3")), [["1"], ["1/1", "3"]]),
    ((L("1/1"), Cancellation(("1/1",)), L("1/2"), L("2/2")), [["1/1"], ["1/2", "2/2"]]),
    ((L("1/1"), Run("9", "2", "retry", retry=RetryOrigin("1/1", "NODE_FAIL", "n1")), L("1/1")),
     [["1/1", "9"], ["1/1"]]),
])
def test_a_launch_is_the_launchers_run_1_of_n_onward(entries: tuple, launches: list[list[str]]) -> None:
    read = Manifest(entries=entries)
    assert [launch.job_ids for launch in read.launches] == launches
    assert read.latest_launch.job_ids == (launches[-1] if launches else [])
    assert read.next_run_number == 1 + sum(isinstance(entry, Run) for entry in entries)


# ---------------------------------------------------------------- the parser


def test_the_c_loader_is_used_when_pyyaml_has_it(monkeypatch: pytest.MonkeyPatch) -> None:
    expected = yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader
    assert manifest_mod.LOADER is expected
    parsed = {name: parse_manifest(reference(name)[1], reference(name)[0]) for name in ("full", "adopted", "rendered")}
    monkeypatch.setattr(manifest_mod, "LOADER", yaml.SafeLoader)
    assert {name: parse_manifest(reference(name)[1], reference(name)[0]) for name in parsed} == parsed


@pytest.mark.skipif(not yaml.__with_libyaml__, reason="PyYAML without libyaml")
def test_what_libyaml_refuses_is_read_by_the_pure_python_parser() -> None:
    # a non-UTF-8 byte of a path (a surrogate escape) is written as "\uDCE9", which libyaml refuses
    path, text = reference("full")
    with pytest.raises(yaml.YAMLError):
        yaml.load(text, Loader=yaml.CSafeLoader)
    assert parse_manifest(text, path).runs[1].base_log_dir == "/logs/caf\udce9 'x'\n"


TEXT = st.text(st.characters(exclude_categories=()), max_size=12)  # surrogates and control characters too
FIELDS = st.lists(st.tuples(st.text("abcxyz_", min_size=1, max_size=6).filter(lambda k: k not in (
    "job_id", "submitted_at", "run", "via", "base_log_dir", "retry_of", "after", "failed_on", "exclude",
    "cancelled", "cancelled_at")), TEXT), max_size=2, unique_by=lambda pair: pair[0]).map(tuple)
RUNS = st.builds(Run, job_id=st.from_regex(r"[0-9]{1,7}", fullmatch=True), run=TEXT, via=TEXT, submitted_at=TEXT,
                 base_log_dir=TEXT, retry=st.none() | st.builds(RetryOrigin, TEXT, TEXT, TEXT, TEXT), extra=FIELDS)
CANCELLATIONS = st.builds(Cancellation, st.lists(st.from_regex(r"[0-9]{1,7}", fullmatch=True), min_size=1,
                                                 max_size=3).map(tuple), TEXT, TEXT, FIELDS)
MANIFESTS = st.builds(
    Manifest, experiment=st.none() | TEXT, script=st.none() | TEXT, created=st.none() | TEXT,
    source=st.none() | st.builds(Source, repository=st.none() | TEXT, commit=st.none() | TEXT,
                                 dirty=st.none() | st.booleans(),
                                 dirty_files=st.none() | st.lists(TEXT, max_size=2).map(tuple), extra=FIELDS),
    snapshot=st.builds(SnapshotStats, st.none() | TEXT, st.none() | st.integers(0, 10**12)),
    config=st.lists(st.tuples(TEXT, TEXT), max_size=3, unique_by=lambda pair: pair[0]).map(tuple),
    gpu_hours=st.none() | st.integers(0, 10**6), entries=st.lists(RUNS | CANCELLATIONS, max_size=4).map(tuple))


def assert_read_as_pyyaml_reads(text: str) -> None:
    """The fast reader reads ``text`` as PyYAML does, or leaves it to PyYAML."""
    try:
        expected = yaml.load(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        expected = "refused"
    fast = yamlsubset.parse(text)
    assert fast is None or fast == expected


# Text as a person or a tool may write it: YAML's tricky words and characters, in printable ASCII
# (the fast reader's ground: anything else is PyYAML's at once).
TRICKY = st.lists(st.sampled_from(["yes", "No", "on", "OFF", "true", "null", "~", "0123", "1e3", "1.5", "0x1A",
                                   "12", "-3", "2026-01-02", "a: b", "a:b", "#c", " x", "x ", "'", "''", '"', "\\",
                                   "- x", "[1]", "{}", "[]", "&a", "*a", "!!str", "|", ">", "?", "%", "@", "`", ",",
                                   "a#b", "launcher", "1/5", "abc_DEF-9.x/y+z"]), max_size=3).map("".join)
ASCII = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e), max_size=10) | TRICKY


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(ASCII, ASCII | st.none() | st.booleans() | st.integers(-5, 10**6) |
                       st.lists(ASCII, max_size=2) | st.dictionaries(ASCII, ASCII, max_size=2), max_size=4),
       st.lists(st.dictionaries(ASCII, ASCII, min_size=1, max_size=3), max_size=3),
       st.lists(st.tuples(st.sampled_from(["job_id", "run", "via", "token"]), ASCII), max_size=4))
def test_the_fast_reader_reads_what_pyyaml_reads(head: dict, entries: list, lines: list) -> None:
    # what PyYAML writes (the manifest, appended entries), then continue.sh's appended lines
    text = yaml.dump(head, default_flow_style=False, sort_keys=False, allow_unicode=True) if head else ""
    text += "runs:\n" + (yaml.dump(entries, default_flow_style=False, sort_keys=False) if entries else "")
    if lines:
        text += f"- job_id: '{len(lines)}'\n" + "".join(entry_field_line(key, value) + "\n" for key, value in lines)
    assert_read_as_pyyaml_reads(text)


WORDS = ["a", "job_id", "runs", "yes", "No", "null", "~", "0123", "0", "12", "-3", "+4", "1e3", "1.5", "x y", "'q'",
         "'it''s'", '"d"', '"a\\nb"', "{}", "[]", "a:b", "a: b", "#c", "a#b", "- x", "/p/q", "git@h:r.git", "12:30",
         "1:2:3", "2026-01-02", "&a", "*a", "!!str", "|", ">", "", "true", "on", ".5", "~x", "@x", "0x1A", "1_000",
         "<<", "="]
LINES = st.lists(st.tuples(st.sampled_from([0, 0, 2, 4]), st.sampled_from(["k: v", "k:", "- k: v", "- v", "- "]),
                           st.sampled_from(WORDS[:30]), st.sampled_from(WORDS)), min_size=1, max_size=6)


@settings(max_examples=1000, deadline=None)
@given(LINES)
def test_the_fast_reader_reads_any_lines_as_pyyaml_does(lines: list) -> None:
    # lines of the forms the fast reader knows, with YAML's tricky words in every place (found: "0123:" is 83)
    text = "".join(" " * indent + form.replace("k", key, 1).replace("v", value) + "\n"
                   for indent, form, key, value in lines)
    assert_read_as_pyyaml_reads(text)


def test_the_fast_reader_reads_the_launchers_own_manifests() -> None:
    path, text = reference("rendered")
    assert yamlsubset.parse(text) == yaml.load(text, Loader=yaml.SafeLoader) is not None
    appended = text + "- job_id: '7'\n  submitted_at: '2026-01-02T03:04:05+00:00'\n  run: '3'\n" + \
        entry_field_line("via", "continue.sh") + "\n  token: '0123456789abcdef'\n"
    assert yamlsubset.parse(appended) == yaml.load(appended, Loader=yaml.SafeLoader)
    assert yamlsubset.parse(appended + "# a comment\n") is None  # left to PyYAML


@settings(max_examples=150, deadline=None)
@given(MANIFESTS)
def test_what_is_written_reads_back_the_same_with_either_parser(manifest: Manifest) -> None:
    text = render_manifest(manifest)
    assert parse_manifest(text, Path("m.yaml")) == manifest
    fast = yamlsubset.parse(text)
    assert fast is None or fast == yaml.load(text, Loader=yaml.SafeLoader)
    try:
        fast = yaml.load(text, Loader=manifest_mod.LOADER)
    except yaml.YAMLError:
        return  # libyaml refuses it: the pure-Python parser reads it (above)
    assert fast == yaml.load(text, Loader=yaml.SafeLoader)


ASCII = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=120)
ASCII_SCALARS = st.none() | st.booleans() | st.integers() | ASCII | st.sampled_from(["", "null", "1/2", "'x'"])
ASCII_DATA = st.recursive(ASCII_SCALARS,
                          lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ASCII, inner, max_size=4),
                          max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(st.one_of(MANIFESTS.map(lambda manifest: manifest.to_data()), st.dictionaries(ASCII, ASCII_DATA, min_size=1)))
def test_libyaml_writes_what_pyyaml_writes_where_the_launcher_lets_it(data: dict[str, object]) -> None:
    # the launcher writes with libyaml's emitter only what _emitted_alike accepts: byte for byte
    # what PyYAML's own emitter writes (reference files and readers depend on the text)
    if manifest_mod._CDumper is None:
        pytest.skip("PyYAML without libyaml")
    for part in (data, data.pop("runs", [])):
        if part and manifest_mod._emitted_alike(part):
            options = {"default_flow_style": False, "sort_keys": False, "allow_unicode": True}
            assert yaml.dump(part, Dumper=manifest_mod._CDumper, **options) == \
                yaml.dump(part, Dumper=manifest_mod._Dumper, **options)


ENTRY_LINE = st.tuples(st.sampled_from(["- ", "  ", "", " ", "-  "]),
                       st.sampled_from(["job_id", "run", "true", "null", "on", "x_1", "1a", "a b", "via"]),
                       st.sampled_from([": ", ":", ": '", " : "]), ASCII | ASCII_SCALARS.map(str))


@settings(max_examples=400, deadline=None)
@given(st.lists(ENTRY_LINE, max_size=8), st.lists(st.dictionaries(st.sampled_from(["job_id", "run", "token", "via"]),
                                                                   ASCII, min_size=1), max_size=3))
def test_the_fast_reader_reads_runs_entries_as_pyyaml_does(lines: list[tuple[str, str, str, str]],
                                                           entries: list[dict[str, str]]) -> None:
    # the runs: section is read a line at a time: whatever the lines, the same data as PyYAML or none
    text = "experiment: x\nruns:\n" + "".join(manifest_mod.entry_text(entry) for entry in entries) + \
        "".join(f"{lead}{key}{colon}{value}\n" for lead, key, colon, value in lines)
    fast = yamlsubset.parse(text)
    if fast is not None:
        assert fast == yaml.load(text, Loader=yaml.SafeLoader)
    if not lines:  # what the launcher appends is read the fast way
        assert fast == yaml.load(text, Loader=yaml.SafeLoader)


# ---------------------------------------------------------------- launch plans


def test_an_open_launch_is_one_with_fewer_runs_than_planned(tmp_path: Path) -> None:
    from nrl_launch.experiment.manifest import Plan, append_cancellation, append_plan

    write_manifest(tmp_path, Manifest(experiment="x"))
    assert read_manifest(tmp_path).open_launch is None
    append_plan(tmp_path, Plan(3, "L1", "261206-120000", "d1"))
    append_run(tmp_path, "11", "1/3", launch="L1", token="t1")
    append_run(tmp_path, "12", "4", via="continue.sh")  # no run of the plan
    opened = read_manifest(tmp_path).open_launch
    assert opened is not None and opened.missing == (2, 3) and [r.job_id for r in opened.queued] == ["11"]
    assert opened.plan.at and opened.plan.via == "launcher"  # planned_at written when appended
    append_run(tmp_path, "13", "2/3", launch="L1")
    append_run(tmp_path, "14", "3/3", launch="L1")
    assert read_manifest(tmp_path).open_launch is None  # complete
    append_plan(tmp_path, Plan(2, "L2", "261206-130000", "d2"))
    append_run(tmp_path, "15", "1/2", launch="L2")
    assert read_manifest(tmp_path).open_launch.missing == (2,)
    append_cancellation(tmp_path, ["15"])
    assert read_manifest(tmp_path).open_launch is None  # nrl-launch cancel closes it
    manifest = read_manifest(tmp_path)
    assert [p.launch for p in manifest.plans] == ["L1", "L2"] and manifest.next_run_number == 6


def test_a_plan_entry_is_appended_text_no_run_for_older_readers(tmp_path: Path) -> None:
    from nrl_launch.experiment.manifest import Plan, append_plan

    write_manifest(tmp_path, Manifest(experiment="x"))
    append_plan(tmp_path, Plan(3, "L1", "261206-120000", "abc", at="2026-01-02T03:04:05+00:00"))
    text = (tmp_path / MANIFEST_NAME).read_text()
    assert text.endswith("runs:\n- planned: '3'\n  launch: 'L1'\n  stamp: '261206-120000'\n  digest: 'abc'\n"
                         "  planned_at: '2026-01-02T03:04:05+00:00'\n  via: 'launcher'\n")
    # no job_id (continue.sh counts "- job_id:" lines) and no "cancelled": a reader that does not know
    # plans keeps it as an entry of another kind, never a run
    data = yaml.safe_load(text)["runs"][0]
    assert "job_id" not in data and "cancelled" not in data
    counted = subprocess.run(["grep", "-c", "^- job_id:", str(tmp_path / MANIFEST_NAME)], capture_output=True,
                             text=True).stdout
    assert counted.strip() == "0" and read_manifest(tmp_path).next_run_number == 1


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.from_regex(r"[a-z_]{1,8}", fullmatch=True), TEXT | ASCII, min_size=1, max_size=4))
def test_an_entry_reads_back_as_written(fields: dict) -> None:
    # single-quoted printable ASCII, or PyYAML's own text for anything else
    text = "runs:\n" + manifest_mod.entry_text(fields)
    assert yaml.load(text, Loader=yaml.SafeLoader)["runs"] == [fields]
    assert_read_as_pyyaml_reads(text)


def test_a_plan_entry_without_a_count_is_kept_as_another_kind(tmp_path: Path) -> None:
    text = "experiment: x\nruns:\n- planned: lots\n  launch: L\n"
    read = parse_manifest(text, tmp_path / MANIFEST_NAME)
    assert read.entries == (OtherEntry((("planned", "lots"), ("launch", "L"))),) and read.plans == ()
