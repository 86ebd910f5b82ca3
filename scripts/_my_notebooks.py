"""The student's own copy of the chapters: ``my-notebooks/`` (git-ignored), kept by scripts/lab.sh.

Run by ``bash scripts/lab.sh`` (inside .venv, from the repository root) before JupyterLab starts.
JupyterLab then opens ``my-notebooks/00-tour.md``: a student runs and edits the copies, and the tracked
chapters in ``notebooks/`` never change, so ``git pull`` always applies (the usual rule for course
material in git, as nbgitpuller keeps it: the learner's edits are theirs, the course's updates arrive
where the learner has not edited).

What it does, each run:

* a chapter, solution or notebook of ``notebooks/`` (``*.md``, ``*.ipynb``, ``solutions/``, and
  ``jupytext.toml`` so that a save writes the same text) that ``my-notebooks/`` lacks is copied there;
* a copy the student has not changed since it was copied is replaced by the new version when
  ``notebooks/`` changed (after a ``git pull``);
* a copy the student changed is kept as it is, and when ``notebooks/`` has a newer version the script
  says so: the new one is in ``notebooks/``; to take it, delete (or rename) the copy and start again;
* anything else in ``my-notebooks/`` (the student's own notebooks) is left alone.

``my-notebooks/.hgmviz-copied.json`` records the SHA-256 of what each copy was copied from; that is how
"changed by the student" is told from "changed upstream".  The copies sit beside ``notebooks/`` at
the same depth, so their links (``../docs/glossary.md``, ``solutions/...``) resolve as the originals'.

A teacher who edits the chapters themselves starts ``bash scripts/lab.sh --edit-chapters``, which opens
``notebooks/`` (tracked files: commit the edits).
"""
from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

SOURCE = "notebooks"
COPY = "my-notebooks"
RECORD = ".hgmviz-copied.json"


def _sources(src: Path) -> list:
    """The files of ``notebooks/`` a student opens (relative paths, sorted)."""
    out = [p for p in src.glob("*.md")] + [p for p in src.glob("*.ipynb")]
    out += [p for p in (src / "solutions").glob("*.md")]
    if (src / "jupytext.toml").is_file():
        out.append(src / "jupytext.toml")
    return sorted(str(p.relative_to(src)) for p in out if p.is_file())


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sync(root) -> list:
    """Bring ``root/my-notebooks`` up to date with ``root/notebooks`` (see the module docstring).
    Returns one message per file it copied, updated or kept although a newer version exists."""
    root = Path(root)
    src, dst = root / SOURCE, root / COPY
    if not src.is_dir():
        raise FileNotFoundError("%s not found: run this from the repository root" % src)
    dst.mkdir(exist_ok=True)
    record_path = dst / RECORD
    try:
        record = json.loads(record_path.read_text())
    except (OSError, ValueError):
        record = {}
    messages = []
    for rel in _sources(src):
        s, d = src / rel, dst / rel
        new = _sha(s)
        if not d.exists():
            d.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(s, d)
            record[rel] = new
            messages.append("copied %s/%s" % (COPY, rel))
            continue
        was = record.get(rel)
        if new == was:
            continue                                   # nothing new upstream
        mine = _sha(d)
        if mine == new:                                # the same text already (e.g. both edited alike)
            record[rel] = new
        elif mine == was:                              # untouched by the student: take the update
            shutil.copyfile(s, d)
            record[rel] = new
            messages.append("updated %s/%s (a newer version came with git pull)" % (COPY, rel))
        else:                                          # the student's edits win; say what is newer
            messages.append("kept your edited %s/%s; %s/%s has a newer version (delete or rename "
                            "your copy and start again to take it)" % (COPY, rel, SOURCE, rel))
    record_path.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    return messages


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    root = Path(argv[0]) if argv else Path.cwd()
    for msg in sync(root):
        print("[hgmviz] " + msg, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
