"""`make bench`: run every benchmark under bench/ (or the ones named) with default settings."""
import importlib
import sys
from pathlib import Path

names = sys.argv[1:] or sorted(p.stem for p in Path(__file__).parent.glob("bench_*.py"))
for name in names:
    module = importlib.import_module(f"bench.{name}")
    print(f"\n=== {name} ===", flush=True)
    sys.argv = [name]
    module.main()
