"""Pack a directory of wheels into one tar file, on the control node.

Usage: python pack_wheelhouse.py WHEELHOUSE_DIR OUTPUT_TAR  -> prints OUTPUT_TAR.

One file ships in one transfer (instead of one per wheel), and the tar is
byte-identical for the same wheels (sorted names, fixed mtime and owner, no
compression: wheels are zip files already), so a rerun copies nothing.
The tar is written under a unique name and renamed into place: two plays on
one control node (two checkouts, a test beside `make up`) share OUTPUT_TAR's
folder, and neither may rename the other's half-written file.
"""
import os
import sys
import tarfile
import tempfile
from pathlib import Path


def main(wheelhouse: str, output: str) -> None:
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=out.name + ".", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for wheel in sorted(Path(wheelhouse).glob("*.whl")):
                info = tar.gettarinfo(str(wheel), arcname=wheel.name)
                info.mtime, info.uid, info.gid, info.uname, info.gname, info.mode = 0, 0, 0, "", "", 0o644
                with open(wheel, "rb") as f:
                    tar.addfile(info, f)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    print(out)


if __name__ == "__main__":
    main(*sys.argv[1:3])
