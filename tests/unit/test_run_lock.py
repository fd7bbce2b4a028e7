import json
import os
import socket
import subprocess
import sys

import run_lock


def _locks(tmp_path):
    (tmp_path / "locks").mkdir()
    for name in ("0.input.lock", "0.output.lock"):
        (tmp_path / "locks" / name).write_text("results/x\n")


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_killed_runs_locks_are_removed(tmp_path):
    _locks(tmp_path)
    (tmp_path / run_lock.HOLDER).write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname()}))
    done = run_lock.remove_stale_locks(tmp_path)
    assert "removed 2 lock(s) left by a Snakemake run that was killed" in done
    assert not list((tmp_path / "locks").iterdir()) and not (tmp_path / run_lock.HOLDER).exists()


def test_live_foreign_and_unrecorded_locks_are_kept(tmp_path):
    _locks(tmp_path)
    assert run_lock.remove_stale_locks(tmp_path) is None  # no record: Snakemake's own message
    record = tmp_path / run_lock.HOLDER
    record.write_text(json.dumps({"pid": _dead_pid(), "host": "another-node"}))
    assert run_lock.remove_stale_locks(tmp_path) is None  # another machine: cannot tell
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "snakemake"])
    try:
        record.write_text(json.dumps({"pid": live.pid, "host": socket.gethostname()}))
        assert run_lock.remove_stale_locks(tmp_path) is None  # a running Snakemake holds them
    finally:
        live.kill()
        live.wait()
    record.write_text("{not json")
    assert run_lock.remove_stale_locks(tmp_path) is None
    assert len(list((tmp_path / "locks").iterdir())) == 2


def test_a_reused_process_number_is_not_a_holder(tmp_path):
    _locks(tmp_path)
    (tmp_path / run_lock.HOLDER).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    # this process runs, but it is pytest, not Snakemake
    assert (run_lock.remove_stale_locks(tmp_path) is not None) == (b"snakemake" not in
                                                                  open(f"/proc/{os.getpid()}/cmdline", "rb").read())


def test_record_and_forget(tmp_path):
    run_lock.record_holder(tmp_path)
    assert json.loads((tmp_path / run_lock.HOLDER).read_text()) == {"pid": os.getpid(), "host": socket.gethostname()}
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / run_lock.HOLDER).write_text(json.dumps({"pid": 1, "host": "h"}))
    run_lock.forget_holder(tmp_path / "other")  # another run's record stays
    assert (tmp_path / "other" / run_lock.HOLDER).exists()
    run_lock.forget_holder(tmp_path)
    assert not (tmp_path / run_lock.HOLDER).exists()
