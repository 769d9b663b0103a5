"""The committed *_pb2 modules must match proto/ (run `make proto` after editing)."""
from pathlib import Path

from appliance import protogen


def test_generated_modules_are_up_to_date(tmp_path):
    protogen.generate(tmp_path)
    generated = tmp_path / "appliance" / "v1"
    committed = Path(protogen.ROOT) / "appliance" / "v1"
    for path in sorted(generated.glob("*.py*")):
        assert path.read_text() == (committed / path.name).read_text(), f"{path.name} is stale: run make proto"
