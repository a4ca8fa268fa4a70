"""tickstore.entry_points finds exactly what importlib.metadata.entry_points(group=...) finds:
in the installed environment, and on hand-made sys.path folders (file format: the PyPA
"Entry points specification", https://packaging.python.org/en/latest/specifications/entry-points/).

Each comparison runs in a new process, as the CLI does: one that imported the
``importlib_metadata`` backport (some test dependencies do) has no fast path left.
``_scan`` is the fast reader alone (``deferred``: it would ask importlib.metadata);
``entry_points`` is what the CLI calls.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

from tickstore.entry_points import EntryPoint, _scan, _Unreadable, entry_points

REPO = Path(__file__).resolve().parents[2]

_COMPARE = r"""
import json, os, sys
from importlib import metadata
from tickstore.entry_points import _scan, _Unreadable, entry_points
args = json.loads(sys.argv[1])
if args["backport"]:
    import importlib_metadata  # noqa: F401 - takes PathFinder's find_distributions away
groups = args["groups"] or sorted({ep.group for d in metadata.distributions() for ep in d.entry_points})
if args["cwd"]:
    os.chdir(args["cwd"])
if args["path"] is not None:
    sys.path[:] = args["path"]

def run(find, group):
    try:
        return [[ep.name, ep.value, ep.group] for ep in find(group)]
    except _Unreadable:
        return "deferred"
    except Exception as exc:
        return [type(exc).__name__, str(exc)]

print(json.dumps({g: {"importlib": run(lambda g: metadata.entry_points(group=g), g), "ours": run(entry_points, g),
                      "fast": run(_scan, g)} for g in groups}))
"""


def compare(groups=None, path=None, *, cwd=None, backport=False) -> dict:
    """{group: {"importlib": ..., "ours": ..., "fast": ...}} in a new process whose
    sys.path is ``path`` (default: the installed environment's, all its groups)."""
    args = json.dumps(dict(groups=groups, path=None if path is None else [str(p) for p in path],
                           cwd=None if cwd is None else str(cwd), backport=backport))
    out = subprocess.run([sys.executable, "-c", _COMPARE, args], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


def same_as_importlib(got: dict, *, fast: bool = True) -> None:
    for group, r in got.items():
        assert r["ours"] == r["importlib"], group
        assert r["fast"] == (r["importlib"] if fast else "deferred"), group  # answered without importlib.metadata


def dist(where: Path, folder: str, entry_points: str | bytes | None = None, *, name: str | None = None) -> Path:
    """A metadata folder (``METADATA`` or, for an .egg-info, ``PKG-INFO``) with ``entry_points.txt``."""
    d = where / folder
    d.mkdir(parents=True)
    meta = "PKG-INFO" if folder.lower().endswith("egg-info") else "METADATA"
    (d / meta).write_text(f"Metadata-Version: 2.1\nName: {name or folder.split('-')[0]}\nVersion: 1.0\n")
    if isinstance(entry_points, bytes):
        (d / "entry_points.txt").write_bytes(entry_points)
    elif entry_points is not None:
        (d / "entry_points.txt").write_text(entry_points)
    return d


def test_the_installed_environment():
    got = compare()
    assert {"tickstore.cli", "console_scripts"} <= set(got)  # setup.cfg's plugins and pip's scripts
    assert len(got["tickstore.cli"]["importlib"]) >= 8  # the collectors' commands
    same_as_importlib(got)


def test_the_importlib_metadata_backport_is_asked(tmp_path):
    """Once ``importlib_metadata`` is imported, PathFinder finds no distributions: its
    finder does, so it answers."""
    pytest.importorskip("importlib_metadata")
    dist(tmp_path, "solo-1.0.dist-info", "[g]\nsolo = solo:s\n")
    same_as_importlib(compare(["g"], [tmp_path], backport=True), fast=False)
    same_as_importlib(compare(["tickstore.cli"], backport=True), fast=False)


def test_first_distribution_of_a_name_wins_across_and_within_folders(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    dist(a, "foo-1.0.dist-info", "[g]\nx = foo_a:x\n")
    dist(b, "foo-2.0.dist-info", "[g]\nx = foo_b:x\ny = foo_b:y\n")  # shadowed by a's foo
    dist(a, "Foo.Bar-1.0.dist-info", "[g]\nfb = a:fb\n")
    dist(b, "foo_bar-2.0.dist-info", "[g]\nfb = b:fb\n")  # same name once normalised (PEP 503, - as _)
    dist(a, "quiet-1.0.dist-info")  # no entry points: still shadows b's quiet
    dist(b, "quiet-2.0.dist-info", "[g]\nq = b:q\n")
    (a / "legacy.egg-info").write_text("Metadata-Version: 1.0\nName: legacy\n")  # an .egg-info file
    dist(b, "legacy-2.0.dist-info", "[g]\nl = b:l\n")
    dist(b, "dup-1.0.dist-info", "[g]\nx = dup:x\n")  # a name another distribution also uses
    dist(b, "eggy-0.1.egg-info", "[g]\ne = eggy:e\n[other]\no = eggy:o\n")  # setuptools develop
    dist(b, "twice-1.0.dist-info", "[g]\nt = one:t\n")  # two versions side by side: listing order
    dist(b, "twice-2.0.dist-info", "[g]\nt = two:t\n")
    dist(b, "folder-1.0.dist-info")
    (b / "folder-1.0.dist-info" / "entry_points.txt").mkdir()  # not a file: no entry points
    got = compare(["g", "other", "G", "none"], [a, tmp_path / "absent", b, a])
    same_as_importlib(got)
    found = got["g"]["ours"]
    assert ["x", "foo_a:x", "g"] in found and ["x", "dup:x", "g"] in found and ["fb", "a:fb", "g"] in found
    assert not {"y", "q", "l"} & {name for name, _, _ in found}


def test_file_format_details(tmp_path):
    text = (
        "top = ignored:before_any_section\n"
        "# a comment\n"
        "[g]\n"
        "  plain = pkg.mod:obj\n"
        "\n"
        "spaced   =   pkg.mod : obj.attr [extra1, extra2]  \n"
        "eq = pkg.mod:obj  # not a comment: part of the value\n"
        "two=a=b\n"
        "= nameless\n"
        "Case = pkg:Case\n"
        "   # indented comment\n"
        "[G]\n"
        "upper = pkg:upper\n"
        "[[g]]\n"
        "brackets = pkg:brackets\n"
        "[ g ]\n"
        "inner = pkg:inner_spaces\n"
        "[console_scripts]\n"
        "tool = pkg.cli:main\n"
        "[g]\n"
        "again = pkg:again\n"
        "[]\n"
        "empty = pkg:empty_group\n"
    )
    dist(tmp_path, "fmt-1.0.dist-info", text)
    dist(tmp_path, "crlf-1.0.dist-info", b"[g]\r\ncrlf = pkg:crlf\r\n\r\n[h]\r\nz=y\r\n")
    dist(tmp_path, "bom-1.0.dist-info", "\ufeff[g]\nbom = pkg:after_a_bom\n".encode())
    got = compare(["g", "G", " g ", "console_scripts", "", "h", "\ufeff[g]"], [tmp_path])
    same_as_importlib(got)
    assert ["eq", "pkg.mod:obj  # not a comment: part of the value", "g"] in got["g"]["ours"]


@pytest.mark.parametrize(
    "content, error",
    [(b"[other]\nok = a:b\n[g]\nno equals sign here\n", "TypeError"), (b"[g]\nx = caf\xe9:x\n", "UnicodeDecodeError")],
)
def test_malformed_files_fail_as_importlib_metadata_does(tmp_path, content, error):
    """A line without '=' or a file that is not UTF-8 makes importlib.metadata raise (for
    any group: it reads every file); so does this, naming the file."""
    dist(tmp_path, "good-1.0.dist-info", "[g]\ngood = a:b\n")
    bad = dist(tmp_path, "bad-1.0.dist-info", content)
    for group, r in compare(["g", "unrelated"], [tmp_path]).items():
        assert r["importlib"][0] == r["ours"][0] == r["fast"][0] == error, group
        assert str(bad) in r["ours"][1], group


def test_the_current_folder_is_the_empty_path_entry(tmp_path):
    dist(tmp_path, "here-1.0.dist-info", "[g]\nhere = here:h\n")
    got = compare(["g"], ["", tmp_path], cwd=tmp_path)
    same_as_importlib(got)
    assert got["g"]["ours"] == [["here", "here:h", "g"]]


def test_where_it_defers_to_importlib_metadata(tmp_path):
    """A zip or an .egg on sys.path, a folder whose name does not give the distribution's
    name: importlib.metadata answers."""
    plain = tmp_path / "plain"
    dist(plain, "plain-1.0.dist-info", "[g]\np = plain:p\n")
    archive = tmp_path / "bundle.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("zipped-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: zipped\nVersion: 1.0\n")
        z.writestr("zipped-1.0.dist-info/entry_points.txt", "[g]\nz = zipped:z\n")
    egg = tmp_path / "old-1.0-py3.11.egg"
    dist(egg, "EGG-INFO", "[g]\nold = old:o\n", name="old")
    upper = tmp_path / "upper"
    dist(upper, "Shout-1.0.DIST-INFO", "[g]\nshout = shout:s\n", name="shout")
    nameless = tmp_path / "nameless"
    dist(nameless, "-1.0.dist-info", "[g]\nanon = anon:a\n", name="anon")
    for extra in (archive, egg, upper, nameless):
        got = compare(["g"], [plain, extra])
        same_as_importlib(got, fast=False)
        assert len(got["g"]["ours"]) == 2, extra  # the other one was found too


def test_an_import_hook_with_distributions_is_asked(tmp_path, monkeypatch):
    dist(tmp_path / "plain", "plain-1.0.dist-info", "[g]\np = plain:p\n")
    hooked = dist(tmp_path / "hooked", "hooked-1.0.dist-info", "[g]\nh = hooked:h\n")

    class Hook:
        """An import hook with distributions of its own (as importlib.metadata allows)."""

        @staticmethod
        def find_distributions(context=metadata.DistributionFinder.Context()):
            return iter([metadata.PathDistribution(hooked)])

    monkeypatch.setattr(sys, "path", [str(tmp_path / "plain")])
    monkeypatch.setattr(sys, "meta_path", [Hook, *sys.meta_path])
    importlib.invalidate_caches()
    want = [(ep.name, ep.value, ep.group) for ep in metadata.entry_points(group="g")]
    assert [(ep.name, ep.value, ep.group) for ep in entry_points("g")] == want
    assert [name for name, _, _ in want] == ["h", "p"]
    with pytest.raises(_Unreadable):
        _scan("g")
    # no finder of distributions at all (PathFinder's taken away, no other): none found
    monkeypatch.setattr(sys, "meta_path", [f for f in sys.meta_path if getattr(f, "find_distributions", None) is None])
    assert list(metadata.entry_points(group="g")) == [] and entry_points("g") == []


@pytest.mark.parametrize(
    "value",
    ["os.path:join", "os.path", "os : path.join", "os.path:join [extra]", "os:path.join  [a, b]  ", "not a reference!",
     ":nomodule", "os:"],
)
def test_an_entry_point_reads_and_loads_its_reference_as_importlib_metadata_does(value):
    mine, theirs = EntryPoint("n", value, "g"), metadata.EntryPoint("n", value, "g")
    for what in ("module", "attr", "load"):
        try:
            want = getattr(theirs, what)
            want = want() if what == "load" else want
        except AttributeError:  # importlib.metadata: the pattern did not match (None.group)
            with pytest.raises(ValueError, match="is not an object reference"):
                got = getattr(mine, what)
                got() if what == "load" else got
            continue
        got = getattr(mine, what)
        assert (got() if what == "load" else got) == want, what
