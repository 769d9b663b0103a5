"""Pack a directory of wheels into one tar file, on the control node.

Usage: python pack_wheelhouse.py WHEELHOUSE_DIR OUTPUT_TAR  -> prints OUTPUT_TAR.

One file ships in one transfer (instead of one per wheel), and the tar is
byte-identical for the same wheels (sorted names, fixed mtime and owner, no
compression: wheels are zip files already), so a rerun copies nothing.
"""
import sys
import tarfile
from pathlib import Path


def main(wheelhouse: str, output: str) -> None:
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for wheel in sorted(Path(wheelhouse).glob("*.whl")):
            info = tar.gettarinfo(str(wheel), arcname=wheel.name)
            info.mtime, info.uid, info.gid, info.uname, info.gname, info.mode = 0, 0, 0, "", "", 0o644
            with open(wheel, "rb") as f:
                tar.addfile(info, f)
    tmp.replace(out)
    print(out)


if __name__ == "__main__":
    main(*sys.argv[1:3])
