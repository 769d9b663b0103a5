"""The closing lines and exit status of `appliance storage migrate` (core/storage/migrate.py)."""
from appliance.core.storage.migrate import Report, summary


def _said(report: Report, final: bool = False) -> tuple[int, str]:
    lines: list[str] = []
    status = summary(report, lines.append, final=final)
    return status, "\n".join(lines)


def test_complete_says_the_next_step():
    status, out = _said(Report(rows=2, copied=1, present=1, bytes_copied=5_000_000, verified={"a", "b"}, passes=1))
    assert status == 0
    assert "2 file(s) in the database; 2 on SeaweedFS, verified: 1 copied now (5.0 MB" in out
    assert "COMPLETE: all 2 file(s)" in out and "--final" in out
    status, out = _said(Report(rows=1, present=1, verified={"a"}), final=True)
    assert status == 0 and 'start the core with storage_backend = "seaweedfs"' in out


def test_broken_blobs_fail_and_are_named():
    status, out = _said(Report(rows=2, copied=1, verified={"a"},
                               broken=["/default/x (blob bb): 5 bytes on disk, the database says 9"]))
    assert status == 1
    assert "broken: /default/x (blob bb): 5 bytes on disk" in out and "INCOMPLETE: 1 broken" in out


def test_files_elsewhere_or_newer_than_the_last_pass_leave_it_incomplete():
    status, out = _said(Report(rows=3, copied=1, verified={"a"}, elsewhere=["cc"]))
    assert status == 3
    assert "neither on this host's disk nor on SeaweedFS" in out and "cc" in out
    assert "1 file(s) were uploaded after the last pass" in out and "INCOMPLETE: run again" in out
