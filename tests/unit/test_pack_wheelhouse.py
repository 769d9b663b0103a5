"""The install's wheelhouse tar: byte-identical for the same wheels, and two
plays packing into one folder at once never break each other (the clean-clone
CI's failure: one play renamed the other's fixed-name temporary file)."""
import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "playbooks/roles/appliance_venv/files/pack_wheelhouse.py"


def _wheelhouse(tmp_path: Path) -> Path:
    house = tmp_path / "wheels"
    house.mkdir()
    for name in ("a-1.0-py3-none-any.whl", "b-2.0-py3-none-any.whl"):
        with zipfile.ZipFile(house / name, "w") as z:
            z.writestr("x.txt", name * 50_000)
    return house


def test_concurrent_packs_all_succeed_and_agree(tmp_path):
    house = _wheelhouse(tmp_path)
    out = tmp_path / "deploy" / "wheelhouse.tar"
    procs = [subprocess.Popen([sys.executable, str(SCRIPT), str(house), str(out)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(8)]
    results = [(p.wait(), p.stderr.read()) for p in procs]
    assert all(rc == 0 for rc, _ in results), results
    assert sorted(p.name for p in out.parent.iterdir()) == ["wheelhouse.tar"]
    first = hashlib.sha256(out.read_bytes()).hexdigest()
    subprocess.run([sys.executable, str(SCRIPT), str(house), str(out)], check=True, capture_output=True)
    assert hashlib.sha256(out.read_bytes()).hexdigest() == first
    assert oct(out.stat().st_mode & 0o777) == "0o644"
