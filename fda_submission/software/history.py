"""Version history of the locked runtime, from git, and the version that was tested.

The tested version is the run's ``manifest.json`` (``package_version``, ``git_commit``,
``git_dirty``). The history is read up to that commit (not the repository's current head, so
the same run gives the same history): the release tags reachable from it, and the commits that
touched the runtime (:data:`RUNTIME_PATHS`) since the latest of those tags - or since the
repository began when no tag exists, which the record says. Without git (an installed wheel, a
source tree without ``.git``) the record says why there is no history; nothing is invented.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

RUNTIME_PATHS = ("cxr_device/runtime",)
LIMIT = 60  # commits listed; the count says how many there are
_SEP = "\x1f"


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=20,
                          check=True).stdout.strip()


def repository_of(source: str | Path) -> Path | None:
    """The top of the git work tree holding ``source``, or None (no git, or not a repository)."""
    try:
        return Path(_git(Path(source), "rev-parse", "--show-toplevel"))
    except (OSError, subprocess.SubprocessError):
        return None


def version_history(source: str | Path, manifest: dict | None, paths: tuple[str, ...] = RUNTIME_PATHS,
                    limit: int = LIMIT) -> dict:
    """``{"available", "reason", "tested", "end", "end_source", "tags", "since", "commits",
    "n_commits", "paths"}``: ``source`` is the product's source folder (its repository is found
    from it); ``manifest`` the run's manifest.json (None when the run has none)."""
    manifest = manifest or {}
    tested = {"package_version": manifest.get("package_version"), "git_commit": manifest.get("git_commit"),
              "git_dirty": manifest.get("git_dirty"), "source": "manifest.json" if manifest else "no manifest.json"}
    base = {"tested": tested, "paths": list(paths), "tags": [], "since": None, "commits": [], "n_commits": 0,
            "end": None, "end_source": None}
    repo = repository_of(source)
    if repo is None:
        return {**base, "available": False,
                "reason": f"{source} is not in a git repository (an installed package, or git is not installed): "
                          "the version history cannot be read from here"}
    commit = tested["git_commit"]
    try:
        if commit and _known(repo, commit):
            end, end_source = commit, "the tested commit (manifest.json: git_commit)"
        else:
            end = _git(repo, "rev-parse", "HEAD")
            end_source = ("the repository's HEAD: the tested commit " + (f"{commit[:12]} is not in this repository"
                          if commit else "is not recorded (no git_commit in manifest.json)"))
        tags = [dict(zip(("tag", "date", "commit"), line.split(_SEP)))
                for line in _git(repo, "tag", "--merged", end, "--sort=-creatordate",
                                 f"--format=%(refname:short){_SEP}%(creatordate:short){_SEP}%(objectname:short)"
                                 ).splitlines() if line]
        since = tags[0]["tag"] if tags else None
        span = f"{since}..{end}" if since else end
        count = int(_git(repo, "rev-list", "--count", span, "--", *paths) or 0)
        log = _git(repo, "log", f"--max-count={limit}", f"--format=%h{_SEP}%ad{_SEP}%s", "--date=short", span,
                   "--", *paths)
    except (OSError, subprocess.SubprocessError, ValueError) as err:
        return {**base, "available": False, "reason": f"git could not read {repo} ({type(err).__name__})"}
    commits = [dict(zip(("commit", "date", "subject"), line.split(_SEP, 2))) for line in log.splitlines() if line]
    return {**base, "available": True, "reason": "", "end": end[:12], "end_source": end_source, "tags": tags,
            "since": since, "commits": commits, "n_commits": count}


def _known(repo: Path, commit: str) -> bool:
    try:
        _git(repo, "cat-file", "-e", f"{commit}^{{commit}}")
        return True
    except (OSError, subprocess.SubprocessError):
        return False
