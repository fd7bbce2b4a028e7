"""Exact peak memory of every process a run starts: the kernel's high-water mark, not samples.

Snakemake's benchmark files sample a job's RSS every 0.5 s for its first 15 s and then
every 30 s, so a job's brief peak is easily missed: the same job measured 6.1 GiB in one
run and 11.4 GiB in the next. Linux keeps each process's own peak RSS (``VmHWM`` in
/proc/PID/status), which only grows; reading it every half second, the last reading
before the process ends misses at most what happened in its last half second.

Attach to a running Snakemake (or any) process; it watches every descendant until the
root exits and writes one row per process: pid, script (the rule's script, from the
command line), job (the job's log path without ``logs/`` and ``.log``, e.g.
``embed/kang1000000/VAE/seed0``, read from the script copy Snakemake runs, which names
it; the same path as the job's benchmark file under ``logs/benchmarks/``), start and end
(seconds since it began watching, to 0.5 s), and peak RSS in GiB:

    python benchmarks/process_peaks.py --pid $(pgrep -of "snakemake --snakefile") --out peaks.tsv

``benchmarks/million_cells.py`` runs it beside each size's Snakemake.
"""

import argparse
import re
import time
from pathlib import Path

import pandas as pd
import psutil

#: Snakemake runs a rule's ``script:`` as a copy named .snakemake/scripts/tmpXXXXXXXX.<script>.py
SCRIPT = re.compile(r"tmp[\w-]+\.(\w+)\.py")
#: The job's log path, as the copy's preamble (the pickled ``snakemake`` object) holds it.
LOG_PATH = re.compile(rb"logs/([\w.=/-]+)\.log")


def high_water_mark_kib(pid: int) -> int | None:
    """The process's peak RSS (VmHWM, KiB) so far, or None once it has gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None


def script_and_job(cmdline: list[str], cwd: str) -> tuple[str, str]:
    """(the rule's script, the job's log path key) of a process, or (its command, "")."""
    for part in cmdline:
        found = SCRIPT.search(part)
        if found:
            try:
                head = (Path(cwd) / part).read_bytes()[:1_000_000]
            except OSError:
                head = b""
            job = LOG_PATH.search(head)
            return found.group(1), job.group(1).decode() if job else ""
    return " ".join(cmdline)[:60].replace("\n", " "), ""


def watch(root: int, interval: float = 0.5) -> pd.DataFrame:
    """Poll the descendants of ``root`` until it exits; one row per process seen."""
    seen: dict[int, dict] = {}
    start = time.monotonic()
    try:
        parent = psutil.Process(root)
    except psutil.NoSuchProcess:
        return pd.DataFrame()
    while parent.is_running() and parent.status() != psutil.STATUS_ZOMBIE:
        now = time.monotonic() - start
        try:
            children = parent.children(recursive=True)
        except psutil.NoSuchProcess:
            break
        for proc in children:
            peak = high_water_mark_kib(proc.pid)
            if peak is None:
                continue
            row = seen.get(proc.pid)
            if row is None:
                try:
                    script, job = script_and_job(proc.cmdline(), proc.cwd())
                except psutil.Error:
                    continue
                row = seen[proc.pid] = {"pid": proc.pid, "script": script, "job": job, "start_s": now,
                                        "end_s": now, "peak_rss_gib": 0.0}
            row["end_s"] = now
            row["peak_rss_gib"] = max(row["peak_rss_gib"], peak / 2**20)
        time.sleep(interval)
    return pd.DataFrame(list(seen.values()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pid", type=int, required=True, help="the process to watch (e.g. Snakemake's)")
    parser.add_argument("--out", type=Path, required=True, help="TSV to write when it exits")
    parser.add_argument("--interval", type=float, default=0.5)
    args = parser.parse_args()
    table = watch(args.pid, args.interval)
    if not table.empty:
        table = table[table["peak_rss_gib"] > 0.05].sort_values("start_s")
    table.to_csv(args.out, sep="\t", index=False, float_format="%.3f")


if __name__ == "__main__":
    main()
