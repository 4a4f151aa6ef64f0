"""Checkpoints are saved atomically and loaded safely (issue 9, "Reliability").

``course_lib.train.save_checkpoint`` writes a unique temporary file next to the target, fsyncs
it and renames it over the target; ``load_checkpoint`` reads with ``weights_only=True``. The
tests: a pickle that would run code is refused, a truncated file gives a clear error, an
interrupted save keeps the previous checkpoint, a round trip restores everything exactly, and
every ``torch.load`` call of the project passes ``weights_only=True``.
"""

from __future__ import annotations

import ast
import json
import os
import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

from course_lib import train
from course_lib.models import MLP

ROOT = Path(__file__).resolve().parents[1]


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return MLP(in_features=4, hidden=(5,), num_classes=3)


def _trained(seed: int = 0) -> tuple[nn.Module, torch.optim.Optimizer]:
    """A model and an Adam optimizer after two steps, so the optimizer has real state."""
    model = _model(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    x, y = torch.randn(8, 4), torch.arange(8) % 3
    for _ in range(2):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return model, optimizer


def _state_equal(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for key in a:
        x, y = a[key], b[key]
        if isinstance(x, torch.Tensor):
            if not (isinstance(y, torch.Tensor) and x.dtype == y.dtype and torch.equal(x, y)):
                return False
        elif isinstance(x, dict):
            if not (isinstance(y, dict) and _state_equal(x, y)):
                return False
        elif x != y:
            return False
    return True


# --- (d) round trip ---------------------------------------------------------------------------


def test_round_trip_restores_model_optimizer_and_extra_exactly(tmp_path):
    model, optimizer = _trained(seed=0)
    extra = {"epoch": 7, "history": {"val_loss": [0.5, 0.25]}, "note": "best", "lr": 1e-3}
    path = train.save_checkpoint(tmp_path / "run" / "ck.pt", model, optimizer, **extra)
    assert path == tmp_path / "run" / "ck.pt" and path.is_file()

    other, other_optimizer = _trained(seed=1)  # different weights and optimizer state
    assert not _state_equal(model.state_dict(), other.state_dict())
    loaded = train.load_checkpoint(path, other, other_optimizer)
    assert loaded == extra
    assert _state_equal(model.state_dict(), other.state_dict())
    assert _state_equal(optimizer.state_dict()["state"], other_optimizer.state_dict()["state"])
    assert optimizer.state_dict()["param_groups"] == other_optimizer.state_dict()["param_groups"]
    assert sorted(p.name for p in path.parent.iterdir()) == ["ck.pt"]  # no temporary left


def test_model_only_checkpoint_and_missing_optimizer_state(tmp_path):
    model, optimizer = _trained()
    path = train.save_checkpoint(tmp_path / "ck.pt", model)
    other = _model(seed=3)
    assert train.load_checkpoint(str(path), other) == {}
    assert _state_equal(model.state_dict(), other.state_dict())
    with pytest.raises(ValueError, match="holds no optimizer state"):
        train.load_checkpoint(path, other, optimizer)


def test_saved_file_has_ordinary_permissions(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    path = train.save_checkpoint(tmp_path / "ck.pt", _model())
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


# --- (a) a pickle that would run code is refused ------------------------------------------


class _Exploit:
    """Unpickling this calls ``Path.touch(marker)``: code execution on load."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


class _ShellExploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("exploit", [_Exploit, _ShellExploit], ids=["path-touch", "os-system"])
def test_a_pickle_that_runs_code_is_refused(tmp_path, exploit):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    model = _model()
    payload = {"model": model.state_dict(), "extra": {"epoch": exploit(marker)}}
    torch.save(payload, path)
    assert not marker.exists()
    with pytest.raises(ValueError, match=r"evil\.pt is not a checkpoint that loads safely"):
        train.load_checkpoint(path, _model(seed=1))
    assert not marker.exists(), "load_checkpoint ran code embedded in the checkpoint"


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_a_plain_pickle_file_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"model": _Exploit(marker)}))  # not even torch.save's format
    with pytest.raises(ValueError, match="evil.pt"):
        train.load_checkpoint(path, _model())
    assert not marker.exists()


# --- (b) truncated, corrupt, missing or malformed files ---------------------------------------


@pytest.mark.parametrize("cut", [0.5, 0.9, 0.0], ids=["half", "most", "empty"])
def test_a_truncated_checkpoint_raises_a_clear_error(tmp_path, cut):
    model, optimizer = _trained()
    path = train.save_checkpoint(tmp_path / "ck.pt", model, optimizer, epoch=1)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(ValueError, match=r"ck\.pt is not a complete checkpoint"):
        train.load_checkpoint(path, _model(seed=1))


def test_random_bytes_raise_a_clear_error(tmp_path):
    path = tmp_path / "noise.pt"
    path.write_bytes(os.urandom(4096))
    # read as a legacy pickle, the bytes are either cut short or refused by weights_only
    with pytest.raises(ValueError, match=r"noise\.pt is not a (complete checkpoint|checkpoint "
                                         r"that loads safely)"):
        train.load_checkpoint(path, _model())


def test_a_missing_checkpoint_raises_file_not_found_naming_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere\.pt"):
        train.load_checkpoint(tmp_path / "nowhere.pt", _model())


@pytest.mark.parametrize(
    "payload",
    [[1, 2, 3], {"weights": {}}, {"model": [1.0]}, {"model": {}, "extra": [1]}],
    ids=["list", "no-model-key", "model-not-a-dict", "extra-not-a-dict"],
)
def test_a_payload_of_the_wrong_structure_raises_value_error(tmp_path, payload):
    path = tmp_path / "odd.pt"
    torch.save(payload, path)
    with pytest.raises(ValueError, match=r"odd\.pt is not a checkpoint written by save_checkpoint"):
        train.load_checkpoint(path, _model())


# --- (c) an interrupted save keeps the previous checkpoint ----------------------------------


def _assert_previous_checkpoint_intact(folder: Path, path: Path, model: nn.Module) -> None:
    assert sorted(p.name for p in folder.iterdir()) == [path.name], "stray temporary file"
    restored = _model(seed=5)
    assert train.load_checkpoint(path, restored) == {"epoch": 1}
    assert _state_equal(model.state_dict(), restored.state_dict())


def test_a_save_interrupted_while_writing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model = _model(seed=0)
    path = train.save_checkpoint(tmp_path / "ck.pt", model, epoch=1)
    real_save = torch.save

    def crash_halfway(obj, f, *args, **kwargs):
        import io

        buffer = io.BytesIO()
        real_save(obj, buffer)
        data = buffer.getvalue()
        if hasattr(f, "write"):
            f.write(data[: len(data) // 2])
            f.flush()
        else:
            Path(f).write_bytes(data[: len(data) // 2])
        raise KeyboardInterrupt("power cut while writing")

    monkeypatch.setattr(train.torch, "save", crash_halfway)
    with pytest.raises(KeyboardInterrupt):
        train.save_checkpoint(path, _model(seed=9), epoch=2)
    monkeypatch.undo()
    _assert_previous_checkpoint_intact(tmp_path, path, model)


def test_a_save_interrupted_before_the_rename_keeps_the_previous_checkpoint(
    tmp_path, monkeypatch
):
    model = _model(seed=0)
    path = train.save_checkpoint(tmp_path / "ck.pt", model, epoch=1)

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(train.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        train.save_checkpoint(path, _model(seed=9), epoch=2)
    monkeypatch.undo()
    _assert_previous_checkpoint_intact(tmp_path, path, model)


def test_temporary_files_are_unique_per_save(tmp_path, monkeypatch):
    """Two saves to the same target never share a temporary file (no fixed ``ck.pt.tmp``)."""
    names = []
    real_replace = os.replace

    def record(src, dst):
        names.append(Path(src).name)
        real_replace(src, dst)

    monkeypatch.setattr(train.os, "replace", record)
    for _ in range(3):
        train.save_checkpoint(tmp_path / "ck.pt", _model())
    assert len(set(names)) == 3
    assert all(name.startswith(".ck.pt.") and name.endswith(".tmp") for name in names)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.pt"]


# --- (e) every torch.load in the project passes weights_only=True ---------------------------


def _python_sources() -> list[tuple[str, str]]:
    """``(label, code)`` of every Python file and every notebook code cell of the project."""
    sources = []
    for folder in ("course_lib", "tests", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            sources.append((str(path.relative_to(ROOT)), path.read_text(encoding="utf-8")))
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        notebook = json.loads(path.read_text(encoding="utf-8"))
        for i, cell in enumerate(notebook["cells"]):
            if cell["cell_type"] == "code":  # markdown cells quote the source document
                code = "".join(cell["source"])
                sources.append((f"{path.relative_to(ROOT)} cell {i}", code))
    return sources


def _as_python(code: str) -> str:
    """Notebook code as plain Python: the body of a cell magic (``%%writefile x.py``,
    ``%%time``) is checked as Python; line magics and shell escapes become ``pass`` (keeping
    the line numbers). A non-Python body (``%%bash``) fails to parse and is reported."""
    lines = code.splitlines()
    if lines and lines[0].startswith("%%"):
        lines[0] = "pass"
    indent = lambda line: line[: len(line) - len(line.lstrip())]  # noqa: E731
    return "\n".join(
        f"{indent(line)}pass" if line.lstrip().startswith(("%", "!")) else line for line in lines
    )


def _torch_load_calls(code: str) -> list[ast.Call]:
    """Every call ``torch.load(...)`` (also ``torch.serialization.load`` and ``from torch
    import load``); strings and comments that merely mention it are not calls."""
    tree = ast.parse(code)
    aliases = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module in ("torch", "torch.serialization")
        for alias in node.names
        if alias.name == "load"
    }
    calls = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        dotted = ast.unparse(func)
        if dotted in ("torch.load", "torch.serialization.load") or (
            isinstance(func, ast.Name) and func.id in aliases
        ):
            calls.append(node)
    return calls


def _passes_weights_only_true(call: ast.Call) -> bool:
    return any(
        kw.arg == "weights_only" and isinstance(kw.value, ast.Constant) and kw.value.value is True
        for kw in call.keywords
    )


def test_the_scanner_finds_real_calls_only():
    code = (
        'text = "torch.load(path)"  # torch.load(path) in a comment\n'
        "a = torch.load(\n    path,\n    map_location='cpu',\n    weights_only=True,\n)\n"
        "b = torch.load(path)\n"
        "from torch import load as tload\n"
        "c = tload(path, weights_only=False)\n"
    )
    calls = _torch_load_calls(code)
    assert [c.lineno for c in calls] == [2, 7, 9]
    assert [_passes_weights_only_true(c) for c in calls] == [True, False, False]
    assert _as_python("%%writefile x.py\nimport torch\nX = torch.load(p)").count("torch.load") == 1
    assert _as_python("!pip install x\n%time y = 1") == "pass\npass"


def test_every_torch_load_passes_weights_only_true():
    unsafe, unparsable, found = [], [], 0
    for label, code in _python_sources():
        try:
            calls = _torch_load_calls(_as_python(code))
        except SyntaxError:
            if "torch.load" in code:
                unparsable.append(label)
            continue
        found += len(calls)
        unsafe += [f"{label}, line {c.lineno}: {ast.unparse(c)}" for c in calls
                   if not _passes_weights_only_true(c)]  # fmt: skip
    assert found > 0, "the scanner found no torch.load call at all: is it still looking?"
    assert not unparsable, f"cannot parse these sources to check torch.load: {unparsable}"
    assert not unsafe, "torch.load without weights_only=True:\n" + "\n".join(unsafe)
