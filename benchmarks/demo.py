"""Cold timing of the README demo (Quickstart command 1): `bench run --suite smoke && bench report --suite smoke`.

    python benchmarks/demo.py                 # time the bench part cold, append the result to RESULTS.md
    python benchmarks/demo.py --install       # also time `python3 -m venv` + `pip install -e .` (a fresh venv)
    python benchmarks/demo.py --no-write      # print only

"Cold" means what a new user has: a fresh, empty BENCH_CACHE (so the smoke datasets are generated and the
shipped tiny backbone is verified and expanded) and a fresh results folder (every job runs). The command
runs under `/usr/bin/time -v` from a temporary working folder, with the repository's tasks.toml, exactly as
the README writes it; wall time, user+sys CPU time (the driver and its worker subprocess) and max RSS are
read from time's report. The machine's load average (1 min) is recorded before and after, since other work
on a shared machine slows the run down. The report's per-shot averages are kept in the section too.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).with_name("RESULTS.md")
MARK = "demo"


def timed(command: str, cwd: Path, env: dict, log: Path) -> dict:
    """Run `command` under /usr/bin/time -v (bash -c); return wall s, user s, sys s, max RSS MiB, rc."""
    time_file = log.with_suffix(".time")
    with open(log, "w") as out:
        rc = subprocess.run(["/usr/bin/time", "-v", "-o", str(time_file), "bash", "-c", command], cwd=cwd, env=env,
                            stdout=out, stderr=subprocess.STDOUT).returncode
    text = time_file.read_text()

    def field(name):
        return re.search(rf"{re.escape(name)}: (.+)", text).group(1).strip()

    wall = 0.0
    for part in field("Elapsed (wall clock) time (h:mm:ss or m:ss)").split(":"):
        wall = wall * 60 + float(part)
    return {"rc": rc, "wall_s": wall, "user_s": float(field("User time (seconds)")),
            "sys_s": float(field("System time (seconds)")),
            "max_rss_mib": int(field("Maximum resident set size (kbytes)")) / 1024}


def load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def machine() -> str:
    cpu = platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if "model name" in line)
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}"


def git_sha() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True).stdout
        return sha.strip() + (" (dirty)" if dirty.strip() else "")
    except OSError:
        return "?"


def leaderboard(report: str) -> str:
    """The report's leaderboard table (method × shots, averaged over the suite's datasets), as printed."""
    lines, keep = [], False
    for line in report.splitlines():
        if line.startswith("#"):
            keep = "leaderboard" in line.lower()
            continue
        if keep and line.startswith("|"):
            lines.append(line)
        elif keep and lines:
            break
    return "\n".join(lines)


def write_section(body: str) -> None:
    begin, end = f"<!-- {MARK} begin -->", f"<!-- {MARK} end -->"
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    section = f"{begin}\n{body.rstrip()}\n{end}\n"
    if begin in text and end in text:
        text = text[:text.index(begin)] + section + text[text.index(end) + len(end) + 1:]
    else:
        text = text.rstrip() + "\n\n" + section
    RESULTS.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--install", action="store_true", help="also time a fresh venv + pip install -e .")
    parser.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    parser.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it")
    parser.add_argument("--note", default="", help="free text for the section (e.g. what else ran)")
    parser.add_argument("--tasks", type=Path, default=REPO / "tasks.toml", help="tasks file (default: the repo's)")
    parser.add_argument("--bench-args", default="", help="extra arguments for `bench run` (e.g. --jobs-per-gpu 2)")
    args = parser.parse_args()

    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-demo-"))
    if args.keep:
        shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BENCH_", "OMP_", "MKL_"))}
    env["BENCH_CACHE"] = str(work / "cache")  # fresh: datasets generated, backbone verified + expanded
    env["HF_HUB_OFFLINE"] = "1"
    venv_bin = Path(sys.executable).parent
    parts, started = {}, time.strftime("%Y-%m-%d %H:%M")
    load_before = load()
    if args.install:
        install = (f"python3 -m venv {work / 'venv'} && . {work / 'venv/bin/activate'} && "
                   f"pip install -q -e {shlex.quote(str(REPO))}")
        parts["venv + pip install -e ."] = timed(install, work, env, work / "install.log")
        venv_bin = work / "venv" / "bin"
    env["PATH"] = f"{venv_bin}{os.pathsep}{env.get('PATH', '')}"
    # cwd = the empty work folder: results land in ./results/smoke there, the tasks file is the repo's
    # (bench falls back to it when ./tasks.toml is absent; named here so a stray file cannot interfere)
    tasks = shlex.quote(str(args.tasks.resolve()))
    command = (f"bench run --suite smoke --tasks {tasks} {args.bench_args} && "
               f"bench report --suite smoke --tasks {tasks} > report.md")
    parts["bench run + report (cold)"] = result = timed(command, work, env, work / "demo.log")
    load_after = load()
    report = (work / "report.md").read_text() if (work / "report.md").exists() else ""
    if result["rc"] != 0:
        print((work / "demo.log").read_text()[-4000:], file=sys.stderr)
        raise SystemExit(f"the demo failed (rc {result['rc']}); log in {work / 'demo.log'}")

    rows = ["| part | wall | user + sys CPU | max RSS |", "|---|---|---|---|"]
    for name, r in parts.items():
        rows.append(f"| {name} | {r['wall_s'] / 60:.1f} min ({r['wall_s']:.0f} s) | "
                    f"{r['user_s'] + r['sys_s']:.0f} s ({r['user_s']:.0f} + {r['sys_s']:.0f}) | "
                    f"{r['max_rss_mib']:.0f} MiB |")
    jobs = re.search(r"done: (\d+) ok, (\d+) failed", (work / "demo.log").read_text())
    body = "\n".join([
        f"## Demo (README Quickstart command 1), cold: {started}",
        "",
        f"Command: `python benchmarks/demo.py{' --install' if args.install else ''}"
        f"{' --bench-args ' + shlex.quote(args.bench_args) if args.bench_args else ''}` "
        f"(`bench run --suite smoke && bench report --suite smoke` under `/usr/bin/time -v`, fresh "
        f"BENCH_CACHE and results folder). Machine: {machine()}; git {git_sha()}.",
        f"Load average (1/5/15 min) before: {load_before}; after: {load_after}."
        + (f" {args.note}" if args.note else ""),
        f"Jobs: {jobs.group(1)} ok, {jobs.group(2)} failed." if jobs else "",
        "",
        *rows,
        "",
        "The report's leaderboard (top-1 %, averaged over the suite's datasets and seeds):",
        "",
        leaderboard(report),
    ])
    print(body)
    print(f"\n(work folder {work}; report in {work / 'report.md'})")
    if not args.no_write:
        write_section(body)
        print(f"wrote {RESULTS}")
    if not args.keep:
        shutil.rmtree(work / "cache", ignore_errors=True)
        shutil.rmtree(work / "venv", ignore_errors=True)


if __name__ == "__main__":
    main()
