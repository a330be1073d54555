"""The artifact manifest of a batch (reports/<B>/manifest.json): the SHA-256 of every input
and output, the digest of the code and the dvc.lock stage hashes; and `verify`, which
recomputes every hash and names each file that changed, vanished or appeared.

Everything in it is reproducible: the batch's wall-clock timing files (reports/<B>/timings/)
are left out, and so is the git commit (a clone that reproduces the batch has another HEAD),
so a rerun of the batch's stages from its commit gives the same manifest, byte for byte.

The PDF cannot hold its own hash (it contains the manifest), so its hash and the manifest's
go to a sidecar, reports/<B>/evidence.sha256, in `sha256sum -c` format.

The manifest is committed to git and printed in the PDF, so the request files are listed by
position and hash, never by name: a requester or a partner system chooses the name of a
request file, and it can carry a person's name or account ("alice-delete-me.jsonl").
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml

from tru import batches, paths
from tru.errors import DataError
from tru.evidence import layout, renderer, signing
from tru.evidence.lineage import code_digest, dvc_stages
from tru.evidence.lookup import check_known_batch, registered_batches
from tru.io import atomic_path, read_json, sha256_file, write_json
from tru.requests.ledger import check_batch_id


def base_model_dir(batch_id: str, root: Path, batches_file: str | Path | None = None) -> str | None:
    """The model folder the batch started from: its batches.yaml entry, else components.json."""
    path = root / Path(batches_file) if batches_file else root / paths.BATCHES_FILE  # relative: to root
    try:
        return str(batches.batch_entry(batch_id, path)["base_model"])
    except (DataError, KeyError):
        pass
    comp = root / layout.report_dir(batch_id) / "components.json"
    if comp.is_file():
        value = read_json(comp).get("base_model")
        return str(value) if value else None
    return None


REQUEST_FILES = "request files"
ROLE_ORDER = (
    REQUEST_FILES,
    "ledger",
    "forget / retain sets",
    "unlearned model",
    "batch model (repaired)",
    "retrain reference",
    "base model",
    "reports",
)


def _groups(batch_id: str, base_model: str | None) -> list[tuple[str, Path]]:
    """(role, folder) of every artifact of the batch, relative to the root."""
    data = paths.BATCH_DATA / batch_id
    groups = [
        (REQUEST_FILES, paths.input_dir(batch_id)),
        ("ledger", paths.LEDGER / batch_id),
        ("forget / retain sets", data / "sets"),
        ("unlearned model", data / "unlearned"),
        ("batch model (repaired)", data / "model"),
        ("retrain reference", data / "retrain"),
    ]
    if base_model:
        groups.append(("base model", Path(base_model)))
    groups.append(("reports", layout.report_dir(batch_id)))
    return groups


def _files(root: Path, folder: Path, batch_id: str) -> list[Path]:
    """Files under root/folder, relative to root; hidden names (DVC's .gitignore, temporary
    files of atomic writes), the report stage's own files and the batch's wall-clock timings
    are left out."""
    base = root / folder
    if base.is_file():
        return [folder]
    if not base.is_dir():
        return []
    own = {(layout.report_dir(batch_id) / name).as_posix() for name in layout.OWN_FILES}
    out = []
    for p in base.rglob("*"):
        rel = p.relative_to(root)
        if (
            not p.is_file()
            or any(part.startswith(".") for part in rel.parts)
            or rel.as_posix() in own
            or layout.is_timing(rel, batch_id)
        ):
            continue
        out.append(rel)
    return out


def request_file_name(folder: Path, position: int, count: int) -> str:
    """How the manifest names the `position`-th of `count` request files in `folder` (in the
    order of their own names): `<folder>/file-<position>-of-<count>`, zero-padded so the
    manifest's order by path is the files' order."""
    return (folder / f"file-{position:0{len(str(count))}d}-of-{count}").as_posix()


def artifact_files(batch_id: str, root: str | Path, base_model: str | None) -> dict[str, tuple[str, Path]]:
    """Name in the manifest -> (role, path relative to root), for every artifact file of the
    batch now on disk. The name is the posix path, except for a request file
    (`request_file_name`)."""
    root = Path(root)
    found: dict[str, tuple[str, Path]] = {}
    for role, folder in _groups(batch_id, base_model):
        files = sorted(_files(root, folder, batch_id))
        for position, rel in enumerate(files, 1):
            name = request_file_name(folder, position, len(files)) if role == REQUEST_FILES else rel.as_posix()
            found.setdefault(name, (role, rel))
    return dict(sorted(found.items()))


def build_manifest(batch_id: str, root: str | Path = Path("."), batches_file: str | Path | None = None) -> dict:
    """SHA-256 (and size) of every input and output of the batch, sorted by path, with the
    digest of the code (tru.evidence.lineage.code_digest) and the batch's dvc.lock stage
    hashes."""
    check_batch_id(batch_id)
    root = Path(root)
    base_model = base_model_dir(batch_id, root, batches_file)
    files = [
        {"path": name, "role": role, "sha256": sha256_file(root / rel), "bytes": (root / rel).stat().st_size}
        for name, (role, rel) in artifact_files(batch_id, root, base_model).items()
    ]
    stages = {
        name: {"cmd": s["cmd"], "deps": s["deps"], "outs": s["outs"]} for name, s in dvc_stages(batch_id, root).items()
    }
    return {
        "batch": batch_id,
        "algorithm": "sha256",
        "base_model": base_model,
        "code_digest": code_digest(),
        # what shapes the PDF's bytes besides its inputs (tru/evidence/renderer.py)
        "renderer": renderer.renderer_info(root),
        "files": files,
        "dvc_lock": stages,
    }


def write_manifest(
    batch_id: str, root: str | Path = Path("."), manifest: dict | None = None, batches_file: str | Path | None = None
) -> Path:
    """Write reports/<B>/manifest.json (atomically); builds the manifest unless given."""
    root = Path(root)
    manifest = manifest if manifest is not None else build_manifest(batch_id, root, batches_file)
    path = root / layout.manifest_path(batch_id)
    write_json(path, manifest)
    return path


def write_sidecar(batch_id: str, root: str | Path = Path(".")) -> Path:
    """reports/<B>/evidence.sha256: the PDF's and the manifest's hashes (`sha256sum -c`)."""
    root = Path(root)
    lines = [
        f"{sha256_file(root / layout.report_dir(batch_id) / name)}  {name}\n"
        for name in (layout.PDF, layout.MANIFEST)
        if (root / layout.report_dir(batch_id) / name).is_file()
    ]
    path = root / layout.sidecar_path(batch_id)
    with atomic_path(path) as tmp:
        tmp.write_text("".join(lines))
    return path


def _short(digest: str) -> str:
    return digest[:12] + "…"


def verify(batch_id: str, root: str | Path = Path("."), trusted_key: str | Path | None = None) -> list[str]:
    """Recompute every hash the batch's manifest and sidecar record, and check the signed
    statement over them (tru.evidence.signing.check: against `trusted_key`, a PEM file, when
    given, else the key the statement names). Returns the problems, one line per file
    ("<path>: changed / missing / not in the manifest / differs from what was signed"); empty
    when all match.
    The batch's timing files are not artifacts (`artifact_files` leaves them out): a new or
    rewritten one is never a problem. DataError for a batch the checkout does not know
    (`tru.evidence.lookup.check_known_batch`)."""
    root = Path(root)
    check_known_batch(batch_id, root)
    check_batch_id(batch_id)
    problems = []
    rep = layout.report_dir(batch_id)
    manifest_file = root / layout.manifest_path(batch_id)
    sidecar = root / layout.sidecar_path(batch_id)

    if sidecar.is_file():
        for line in sidecar.read_text().splitlines():
            digest, _, name = line.partition("  ")
            where = (rep / name.strip()).as_posix()
            if not (root / where).is_file():
                problems.append(f"{where}: missing")
            elif sha256_file(root / where) != digest.strip():
                problems.append(
                    f"{where}: changed (recorded sha256 {_short(digest)}, now {_short(sha256_file(root / where))})"
                )
    else:
        problems.append(
            f"{layout.sidecar_path(batch_id).as_posix()}: missing (the PDF's and the manifest's own hashes)"
        )

    if not manifest_file.is_file():
        problems.append(f"{layout.manifest_path(batch_id).as_posix()}: missing (run the report stage first)")
        return problems
    try:
        manifest = read_json(manifest_file)
        recorded = {f["path"]: f["sha256"] for f in manifest["files"]}
    except (ValueError, KeyError, TypeError):
        problems.append(f"{layout.manifest_path(batch_id).as_posix()}: not a valid manifest")
        return problems
    if manifest.get("batch") != batch_id:
        problems.append(
            f"{layout.manifest_path(batch_id).as_posix()}: is the manifest of batch {manifest.get('batch')!r}"
        )

    found = artifact_files(batch_id, root, manifest.get("base_model"))
    for name, digest in sorted(recorded.items()):
        if name not in found:
            problems.append(f"{name}: missing")
            continue
        now = sha256_file(root / found[name][1])
        if now != digest:
            problems.append(f"{name}: changed (recorded sha256 {_short(digest)}, now {_short(now)})")
    for name in found:
        if name not in recorded:
            problems.append(f"{name}: not in the manifest (added after the evidence was made)")
    _, unsigned = signing.check(batch_id, root, trusted_key)
    return problems + lock_problems(batch_id, root) + unsigned


def lock_problems(batch_id: str, root: str | Path = Path(".")) -> list[str]:
    """Files the batch's stages wrote that differ from the md5 dvc.lock recorded for them, one
    line each. The manifest alone cannot catch an edited audit.json followed by `tru report`
    (the report re-hashes what it finds); the lock entry of the stage that wrote the file still
    holds the original. Folders (`.dir` hashes), timing files and the report stage's own files
    are left out; an empty list when the checkout has no dvc.lock."""
    root = Path(root)
    lock_file = root / "dvc.lock"
    if not lock_file.is_file():
        return []
    stages = (yaml.safe_load(lock_file.read_text()) or {}).get("stages") or {}
    problems = []
    for name in dvc_stages(batch_id, root):  # the batch's stages, the report stage left out
        for out in stages.get(name, {}).get("outs") or []:
            path, digest = str(out.get("path", "")), str(out.get("md5") or "")
            file = root / path
            if out.get("hash") != "md5" or not digest or digest.endswith(".dir") or layout.is_timing(path, batch_id):
                continue
            if not file.is_file():
                problems.append(f"{path}: missing (dvc.lock records it as an output of {name})")
            elif hashlib.md5(file.read_bytes()).hexdigest() != digest:
                problems.append(f"{path}: differs from what {name} wrote (dvc.lock md5 {digest[:12]}…)")
    return problems


def verify_all(root: str | Path = Path("."), trusted_key: str | Path | None = None) -> dict[str, list[str]]:
    """`verify` of every batch registered in batches.yaml, oldest first: batch -> its problems
    (empty when every hash matches). A batch without evidence yet (no manifest: its stages
    have not reached the report, or its audit gate refused it) has problems too."""
    root = Path(root)
    return {batch_id: verify(batch_id, root, trusted_key) for batch_id in registered_batches(root)}
