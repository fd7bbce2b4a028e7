"""Stale locks: a run that is killed outright (SIGKILL, out of memory, a node failure)
leaves Snakemake's locks in .snakemake/locks, and the same command then stops with
"Directory cannot be locked" until someone runs `snakemake --unlock`.

The workflow records which process holds the locks (``record_holder``, from `onstart`,
which Snakemake runs only once it holds them) and forgets it when the run ends
(``forget_holder``, from `onsuccess` and `onerror`). At the next start, before Snakemake
locks, ``remove_stale_locks`` removes the locks only when that record says they belong to
a process of this machine that no longer runs (or that is no longer Snakemake: its process
number was reused). Locks of a live run, of another machine, or without a record are left
as they are, and Snakemake's own message applies. Standard library only.
"""

import json
import os
import socket
from pathlib import Path

HOLDER = "ivae_lock_holder.json"


def record_holder(persistence: str | os.PathLike = ".snakemake") -> None:
    """Record this process (the Snakemake run that holds the locks) as their holder."""
    path = Path(persistence) / HOLDER
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{HOLDER}.{os.getpid()}")
    tmp.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    os.replace(tmp, path)


def forget_holder(persistence: str | os.PathLike = ".snakemake") -> None:
    """The run ended (Snakemake removes its locks itself): drop the record."""
    record = Path(persistence) / HOLDER
    try:
        if json.loads(record.read_text()).get("pid") == os.getpid():
            record.unlink()
    except (OSError, ValueError):
        pass


def process_runs(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine and is Snakemake (where /proc tells;
    elsewhere, whether it runs at all: the safe answer)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # runs, as another user
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():
        try:
            return b"snakemake" in cmdline.read_bytes()
        except OSError:
            return True
    return True


def remove_stale_locks(persistence: str | os.PathLike = ".snakemake") -> str | None:
    """Remove the locks of a killed run of this machine (module doc); returns what was
    done, for the log, or None when nothing was."""
    persistence = Path(persistence)
    locks = sorted((persistence / "locks").glob("*.lock"))
    record = persistence / HOLDER
    if not locks or not record.exists():
        return None
    try:
        holder = json.loads(record.read_text())
        pid, host = int(holder["pid"]), str(holder["host"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if host != socket.gethostname() or process_runs(pid):
        return None
    for lock in locks:
        lock.unlink(missing_ok=True)
    record.unlink(missing_ok=True)
    return (f"removed {len(locks)} lock(s) left by a Snakemake run that was killed (process {pid} on {host} no "
            "longer runs); its incomplete jobs are rerun, trainings from their last checkpoint")
