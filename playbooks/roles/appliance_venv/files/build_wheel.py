"""Build the appliance wheel from a source checkout, on the control node.

Usage: python build_wheel.py SOURCE_DIR OUTPUT_DIR  -> prints the wheel's path.

The checkout is copied to a scratch directory first so the build never writes
into it (setuptools leaves build/ and *.egg-info behind, and a stale build/lib
would smuggle deleted modules into the wheel). SOURCE_DATE_EPOCH pins the zip
timestamps, so the same sources give a byte-identical wheel and Ansible's copy
reports no change on a rerun.
"""
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SKIP = shutil.ignore_patterns(
    ".git", ".venv", "venv", "build", "dist", "*.egg-info", "__pycache__", "*.pyc",
    ".pytest_cache", ".state", "tests", "bench", "vagrant", ".vagrant", "playbooks",
    "inventory", "node_modules",
)


def build_dashboard(source: Path, tree: Path) -> None:
    """The wheel ships the dashboard's built assets (docs/dashboard.md): built by
    `make venv`; when missing or older than their sources, built here in the copy."""
    built = source / "appliance" / "http" / "dashboard_dist" / "index.html"
    sources = [p for p in (source / "dashboard").rglob("*") if p.is_file() and "node_modules" not in p.parts]
    if built.is_file() and all(p.stat().st_mtime <= built.stat().st_mtime for p in sources):
        return
    for argv in (["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], ["npm", "run", "--silent", "build"]):
        proc = subprocess.run(argv, cwd=tree / "dashboard", stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if proc.returncode != 0:
            sys.exit(f"building the dashboard failed ({' '.join(argv)}; `make venv` builds it):\n{proc.stdout}")


def main(source: str, output: str) -> None:
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="appliance-wheel-") as scratch:
        tree = Path(scratch) / "src"
        shutil.copytree(source, tree, ignore=SKIP, symlinks=True)
        build_dashboard(Path(source), tree)
        env = dict(os.environ, SOURCE_DATE_EPOCH="315532800", PIP_DISABLE_PIP_VERSION_CHECK="1")
        built = Path(scratch) / "wheel"
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(built), str(tree)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        if proc.returncode != 0:
            sys.exit(f"building the appliance wheel failed:\n{proc.stdout}")
        (wheel,) = built.glob("appliance-*.whl")
        # Copied under a unique name, then renamed: a play running beside this
        # one (same control node, same OUTPUT_DIR) never reads a partial wheel.
        fd, tmp = tempfile.mkstemp(prefix=wheel.name + ".", suffix=".tmp", dir=out)
        os.close(fd)
        shutil.copy2(wheel, tmp)
        os.replace(tmp, out / wheel.name)
        print(out / wheel.name)


if __name__ == "__main__":
    main(*sys.argv[1:3])
