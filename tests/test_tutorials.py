"""The tutorials' Python blocks run as written, in order, each tutorial in a fresh
namespace and a temporary directory (what a user who copies them gets)."""
import pathlib
import re

import pytest

TUTORIALS = sorted((pathlib.Path(__file__).parent.parent / "docs" / "tutorials").glob("*.md"))


def blocks(path: pathlib.Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def test_there_are_tutorials_with_code():
    assert len(TUTORIALS) >= 2 and all(blocks(p) for p in TUTORIALS)


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.stem)
def test_tutorial_runs(path, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__tutorial__"}
    for i, code in enumerate(blocks(path)):
        try:
            exec(compile(code, f"{path.name}[block {i + 1}]", "exec"), namespace)  # noqa: S102
        except Exception as exc:  # noqa: BLE001 - name the block that failed
            pytest.fail(f"{path.name}, block {i + 1}: {type(exc).__name__}: {exc}")
    assert capsys.readouterr().out            # the tutorial shows its results
