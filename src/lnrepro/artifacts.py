"""Files a run or a script leaves behind: atomic writes (text, CSV, figures) and checkpoints.

Every result file (results/*.csv, *.md, *.png, run files, caches, checkpoints) is written
through `atomic_write`: into a temporary file next to it, then renamed over it, so a kill never
leaves half a file and a failed write is one OutputError line. `read_checkpoint`,
`read_run_checkpoint` and `model_from_checkpoint` are the one way back from
`<run>/checkpoints/last.pt` (or best.pt) to a model.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

from lnrepro.errors import DataError, OutputError, one_line


def output_error(path: Path, error: BaseException) -> OutputError | None:
    """The OutputError line for a failed write of `path`, when `error` is (or was raised while
    handling) an OSError: torch.save reports a full disk as a RuntimeError whose context is the
    OSError. None for any other error."""
    seen = set()
    while error is not None and id(error) not in seen and not isinstance(error, OSError):
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    if not isinstance(error, OSError):
        return None
    return OutputError(
        f"cannot write {path} ({error.strerror or error}): free space or fix the "
        "permissions; files written before are intact"
    )


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write `path` through `write(file)` into a temporary file next to it, then rename it over
    `path`: a kill never leaves a half-written file, and a failed write (disk full, permissions,
    quota) removes the temporary file, leaves the previous `path` intact and raises OutputError."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        error = output_error(path, e)
        if error is None:
            raise
        raise error from None


_TEMP_NAME = re.compile(r"^\..+\.(?P<pid>\d+)\.tmp$")  # atomic_write's `.<name>.<pid>.tmp`


def process_alive(pid: int) -> bool:
    """Whether process `pid` runs on this machine (a zombie, dead but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no /proc (not Linux), or it just ended
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def remove_stale_temps(folder: Path) -> list[tuple[Path, int]]:
    """Remove the temporary files that `atomic_write` left in `folder` when its writer was
    killed during a write (kill -9 while a checkpoint was written): those whose writer process
    (the pid in the name) is no longer running. Returns (path, size) of each file removed."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP_NAME.match(entry.name)
        if match is None or int(match["pid"]) == os.getpid() or process_alive(int(match["pid"])):
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            size = entry.stat(follow_symlinks=False).st_size
            os.unlink(entry.path)
        except OSError:
            continue
        removed.append((Path(entry.path), size))
    return removed


def atomic_write_text(path: Path, text: str) -> None:
    """`atomic_write` of a text (UTF-8)."""
    atomic_write(path, lambda f: f.write(text.encode()))


def write_csv(path: Path, header: list, rows: Iterable[list]) -> None:
    """A CSV file (csv module defaults: comma, \\r\\n line ends), written atomically."""
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def save_figure(fig, path: Path, dpi: int = 120, metadata: dict | None = None) -> None:
    """A matplotlib figure written atomically, in the format of `path`'s suffix (`metadata`:
    text fields stored in the file, e.g. PNG tEXt chunks)."""
    path = Path(path)
    fmt = path.suffix.lstrip(".") or None
    atomic_write(path, lambda f: fig.savefig(f, dpi=dpi, format=fmt, metadata=metadata))


def png_text(path: Path) -> dict[str, str]:
    """The tEXt fields of a PNG file (what `save_figure(..., metadata=...)` stored)."""
    data, pos, out = Path(path).read_bytes(), 8, {}
    while pos + 8 <= len(data):
        size, kind = int.from_bytes(data[pos : pos + 4], "big"), data[pos + 4 : pos + 8]
        if kind == b"tEXt":
            key, _, value = data[pos + 8 : pos + 8 + size].partition(b"\0")
            out[key.decode("latin-1")] = value.decode("latin-1")
        pos += 12 + size
    return out


def read_checkpoint(path: str | Path) -> dict:
    """A checkpoint file (`torch.save` of a dict, tensors only) on the CPU; an unreadable file
    (truncated, foreign) is one DataError line."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001  (truncated or foreign file)
        why = one_line(e)
        why = why if len(why) <= 120 else why[:117] + "..."
        raise DataError(f"checkpoint {path} cannot be read ({type(e).__name__}: {why})") from None


def model_from_checkpoint(ckpt: dict, **kwargs):
    """The model of a training checkpoint (its saved `config.model` instantiated with the saved
    norm and `kwargs`, then its weights loaded), in eval mode, and its NormSpec. `kwargs` are
    what the data gave the model at training time (vocabulary size, image size, ...), from
    `ckpt["model"]["_extra_state"]`; a key in both `config.model` and `kwargs` takes `kwargs`."""
    import hydra

    from lnrepro.nn.norm import NormSpec

    cfg = ckpt.get("config") or {}
    norm = NormSpec.from_cfg(
        cfg.get("norm") or {"kind": "ln"}, (cfg.get("data") or {}).get("batch_size")
    )
    model_cfg = dict(cfg.get("model") or {})
    model_cfg.update({k: v for k, v in kwargs.items() if k in model_cfg})
    rest = {k: v for k, v in kwargs.items() if k not in model_cfg}
    model = hydra.utils.instantiate(model_cfg, _convert_="all", norm=norm, **rest)
    model.load_state_dict(ckpt["model"])
    return model.eval(), norm


def checkpoint_file(where: str | Path) -> Path:
    """A checkpoint named directly (`<run>/checkpoints/best.pt`), or a run directory's
    `checkpoints/last.pt`."""
    where = Path(where)
    return where / "checkpoints" / "last.pt" if where.is_dir() else where


def read_run_checkpoint(where: str | Path) -> tuple[Path, dict]:
    """(path, checkpoint) of a training checkpoint: `where` is the file (last.pt, best.pt) or its
    run directory. Absent, unreadable, or no training checkpoint of this project (a saved config
    and model): one DataError line."""
    path = checkpoint_file(where)
    if not path.is_file():
        raise DataError(f"no checkpoint at {path} (give <run dir>/checkpoints/last.pt or best.pt)")
    ckpt = read_checkpoint(path)
    if not (isinstance(ckpt, dict) and isinstance(ckpt.get("config"), dict) and "model" in ckpt):
        raise DataError(f"{path} is not a training checkpoint of this project (no config or model)")
    return path, ckpt


def load_run_model(
    run_dir: str | Path, target: str, what: str, kwargs: Callable[[dict], dict]
) -> tuple:
    """(model, NormSpec, checkpoint) of a run directory's checkpoints/last.pt (or of a checkpoint
    file named directly, e.g. best.pt), whose model's `_target_` must contain `target` (else
    DataError "not a <what> run"); `kwargs(extra)` maps the model's saved extra state to the
    arguments the data gave it (model_from_checkpoint)."""
    if Path(run_dir).is_dir() and not checkpoint_file(run_dir).exists():
        raise DataError("no checkpoints/last.pt (not a finished or checkpointed run)")
    _, ckpt = read_run_checkpoint(run_dir)
    model_cfg = ckpt["config"].get("model") or {}
    if target not in str(model_cfg.get("_target_")):
        raise DataError(f"not a {what} run ({model_cfg.get('_target_')})")
    model, norm = model_from_checkpoint(ckpt, **kwargs(ckpt["model"].get("_extra_state") or {}))
    return model, norm, ckpt
