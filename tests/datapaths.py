"""Where the tests find the real data: $ASINTROVAE_TEST_DATA, else shared/data beside the checkout (read-only in CI,
a writable copy on a user's machine: the tests must pass and leave it unchanged either way)."""
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get('ASINTROVAE_TEST_DATA') or ROOT.parent/'shared'/'data').resolve()


def tree(root):
    "Every path under `root` with its size and modification time: what 'left unchanged' means for a data folder."
    return sorted((str(p.relative_to(root)), p.lstat().st_size, p.lstat().st_mtime_ns) for p in Path(root).rglob('*'))
