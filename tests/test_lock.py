"""The locked environment: requirements.lock pins what pyproject.toml asks for, with hashes.

`make venv` installs requirements.lock with `pip install --require-hashes` (a file whose sha256
differs fails the install), then the project with --no-deps. These tests keep the lock and
pyproject.toml in step, keep CUDA builds out, and keep the Makefile installing from the lock.
Fast, no network: they read three files and the installed packages' metadata.
"""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"
EXTRAS = ("test", "docs")  # what the Makefile's venv installs: .[test,docs]
CUDA = re.compile(r"^(nvidia-|cuda-|triton$|pytorch-triton)")
HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}$")


def _lock_entries(text: str) -> dict[str, tuple[str, list[str]]]:
    """name -> (the line's requirement text, its --hash options), continuation lines joined."""
    entries: dict[str, tuple[str, list[str]]] = {}
    logical = re.sub(r"\\\n", " ", text)
    for raw in logical.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        assert not line.startswith("-"), f"requirements.lock: an option line, not a pinned package: {line!r}"
        spec, *options = line.split()
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        assert name not in entries, f"requirements.lock: {req.name} twice"
        entries[name] = (spec, options)
    return entries


@pytest.fixture(scope="module")
def lock() -> dict[str, tuple[str, list[str]]]:
    assert LOCK.is_file(), "requirements.lock is missing: run tools/lock.sh"
    return _lock_entries(LOCK.read_text())


def _pinned_version(spec: str) -> Version:
    req = Requirement(spec)
    (only,) = req.specifier  # exactly one specifier: ==
    assert only.operator == "==" and "*" not in only.version, f"requirements.lock: {spec} is not an exact == pin"
    return Version(only.version)


def _project_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in EXTRAS:
        reqs += [Requirement(r) for r in project["optional-dependencies"][extra]]
    return reqs


def test_every_lock_entry_is_an_exact_pin_with_hashes(lock):
    assert len(lock) > 100, "requirements.lock looks truncated"
    for name, (spec, options) in lock.items():
        _pinned_version(spec)
        hashes = [o for o in options if o.startswith("--hash=")]
        assert hashes, f"requirements.lock: {name} has no --hash=sha256: (pip --require-hashes refuses it)"
        bad = [h for h in hashes if not HASH.match(h)]
        assert not bad, f"requirements.lock: {name}: not sha256 hashes: {bad}"
        assert not Requirement(spec).marker, f"requirements.lock: {name} has a marker: the lock is for one platform"


def test_lock_pins_every_pyproject_requirement(lock):
    """Each of dependencies + the test and docs extras: in the lock, ==, hashed, and allowed by pyproject."""
    missing, disagree = [], []
    for req in _project_requirements():
        name = canonicalize_name(req.name)
        if name not in lock:
            missing.append(str(req))
            continue
        spec, options = lock[name]
        version = _pinned_version(spec)
        assert any(o.startswith("--hash=sha256:") for o in options), f"{req.name}: no hash in requirements.lock"
        if not req.specifier.contains(version, prereleases=True):
            disagree.append(f"{req} (locked {version})")
    assert not missing, f"in pyproject.toml but not in requirements.lock (run tools/lock.sh): {', '.join(missing)}"
    assert not disagree, f"requirements.lock disagrees with pyproject.toml (run tools/lock.sh): {', '.join(disagree)}"


def test_lock_holds_the_extras_of_extras(lock):
    """mkdocstrings[python]: the extra's own package is locked too."""
    for req in _project_requirements():
        if req.extras and canonicalize_name(req.name) == "mkdocstrings":
            assert "mkdocstrings-python" in lock, "mkdocstrings[python] needs mkdocstrings-python in requirements.lock"


def _extras_asked(lock) -> dict[str, set[str]]:
    """name -> the extras that locked packages (and the project) ask of it, from the installed metadata."""
    asked: dict[str, set[str]] = {}
    reqs = list(_project_requirements())
    for other in lock:
        try:
            reqs += [Requirement(r) for r in importlib.metadata.requires(other) or []]
        except importlib.metadata.PackageNotFoundError:
            continue
    for req in reqs:
        # a requirement under an extra nobody installs (`extra == "..."` marker) does not count
        if not req.extras or (req.marker and "extra" in str(req.marker)):
            continue
        asked.setdefault(canonicalize_name(req.name), set()).update(canonicalize_name(e) for e in req.extras)
    return asked


def test_lock_lines_name_the_extras_their_dependents_ask_for(lock):
    """weasyprint asks for fonttools[woff]: the lock line must read fonttools[woff]==..., or pip
    (23.x, what a fresh Python 3.11 venv has) refuses the whole install in --require-hashes mode,
    taking the extra's requirement as unpinned ('all requirements must have their versions pinned
    with =='). tools/lock.sh keeps extras on (--no-strip-extras)."""
    missing = []
    asked = _extras_asked(lock)
    for name, (spec, _) in lock.items():
        have = {canonicalize_name(e) for e in Requirement(spec).extras}
        if lacking := asked.get(name, set()) - have:
            missing.append(f"{name}[{','.join(sorted(lacking))}]")
    assert not missing, (
        "requirements.lock lines without the extras asked of them (tools/lock.sh --no-strip-extras): "
        + ", ".join(missing)
    )
    assert "fonttools[woff]" in lock["fonttools"][0]


def test_lock_has_no_cuda_package_and_torch_is_the_cpu_build(lock):
    cuda = sorted(n for n in lock if CUDA.match(n))
    assert not cuda, f"CUDA packages in requirements.lock: {', '.join(cuda)}"
    torch = _pinned_version(lock["torch"][0])
    assert torch.local == "cpu", f"torch must be the CPU build (+cpu), locked: {torch}"


def test_lock_is_not_the_project_itself(lock):
    assert "tru" not in lock, "the project is installed editable with --no-deps, not from the lock"


def test_makefile_installs_from_the_lock_with_hashes():
    text = (ROOT / "Makefile").read_text()
    stamp = re.search(r"^\$\(STAMP\):(.*)$", text, re.M)
    assert stamp and "$(LOCK)" in stamp.group(1) and "pyproject.toml" in stamp.group(1)
    assert re.search(r"^LOCK := requirements\.lock$", text, re.M)
    recipe = text[stamp.end() :].split("\n\n", 1)[0]
    assert "--require-hashes -r $(LOCK)" in recipe
    assert "--no-deps" in recipe and "-e ." in recipe
    assert "[test,docs]" not in recipe, "the project's requirements come from the lock, not from open ranges"


def test_installed_versions_are_the_locked_ones(lock):
    """The environment the tests run in is the locked one (a stale .venv: `make clean-venv venv`)."""
    wrong = []
    for name, (spec, _) in lock.items():
        try:
            installed = Version(importlib.metadata.version(name))
        except importlib.metadata.PackageNotFoundError:
            wrong.append(f"{name} (not installed)")
            continue
        if installed != _pinned_version(spec):
            wrong.append(f"{name} {installed} (locked {_pinned_version(spec)})")
    assert not wrong, f"installed packages differ from requirements.lock: {', '.join(wrong)}"


def test_lock_parser_names_what_is_wrong():
    entries = _lock_entries("a==1.0 \\\n    --hash=sha256:" + "0" * 64 + "\n    # via b\nb==2.0\n")
    assert entries["a"][1] == ["--hash=sha256:" + "0" * 64]
    assert entries["b"][1] == []


def test_the_evidence_manifest_records_the_lock(tmp_path):
    """The manifest names the environment that rendered the evidence: the lock's sha256 (and,
    without a lock, says so rather than guessing)."""
    import hashlib

    from tru.evidence.renderer import renderer_info

    assert renderer_info(tmp_path)["lock_sha256"] is None
    lock = Path(__file__).resolve().parents[1] / "requirements.lock"
    (tmp_path / "requirements.lock").write_bytes(lock.read_bytes())
    assert renderer_info(tmp_path)["lock_sha256"] == hashlib.sha256(lock.read_bytes()).hexdigest()
