"""The contracts build offline and gen/ is what the protos produce today."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUF = ROOT / "node_modules" / ".bin" / "buf"


def _tree(root: Path) -> dict[str, Path]:
    return {
        str(p.relative_to(root)): p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    }


def test_gen_is_fresh(tmp_path: Path) -> None:
    out = tmp_path / "gen"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gen.py"), "--out", str(out)], check=True)
    fresh, committed = _tree(out), _tree(ROOT / "gen")
    assert sorted(fresh) == sorted(committed), "gen/ file list is stale: run `make gen`"
    stale = [name for name, path in fresh.items() if not filecmp.cmp(path, committed[name], shallow=False)]
    assert stale == [], f"gen/ is stale for {stale}: run `make gen`"


def test_buf_lint_and_format_clean(tmp_path: Path) -> None:
    image = tmp_path / "image.binpb"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "gen.py"),
            "--out",
            str(tmp_path / "g"),
            "--image",
            str(image),
        ],
        check=True,
    )
    lint = subprocess.run([str(BUF), "lint", str(image), "--path", "makoto"], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = subprocess.run(
        [str(BUF), "format", "--diff", "--exit-code", "proto"], cwd=ROOT, capture_output=True, text=True
    )
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
