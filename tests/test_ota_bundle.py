"""Bundles and manifests: round trip, and every way a bundle can lie is refused with its name."""

import io
import json
import tarfile

import pytest

from ota import bundle
from ota import manifest as mf


def _wheels(tmp_path, n=3):
    d = tmp_path / "src"
    d.mkdir()
    files = [d / "cabinet_agent-1.2.0-py3-none-any.whl", d / "pip-23.2.1-py3-none-any.whl"]
    files += [d / f"dep{i}-1.0-py3-none-any.whl" for i in range(n - 2)]
    for i, f in enumerate(files):
        f.write_bytes(f"wheel {i} ".encode() * (100 + i))
    return files


def _manifest(files, **over):
    d = {
        "format": 1,
        "name": "cabinet-agent",
        "version": "1.2.0",
        "counter": 7,
        "boards": ["sim", "rpi4_rs485"],
        "python": "3.11",
        "created": "2026-11-22T10:00:00Z",
        "project_wheel": files[0].name,
        "installer_wheel": files[1].name,
        "wheels": bundle.describe_wheels(files),
    }
    d.update(over)
    return d


def test_round_trip(tmp_path):
    files = _wheels(tmp_path)
    man = mf.parse(_manifest(files))
    b = bundle.build(tmp_path / "x.bundle", man, files)
    assert bundle.read_manifest(b) == man
    got = bundle.extract(b, tmp_path / "out")
    assert got == man and got.slot == "7-1.2.0"
    assert got.dependency_wheels == [files[2].name]
    for f in files:
        assert (tmp_path / "out" / "wheels" / f.name).read_bytes() == f.read_bytes()
    assert mf.parse((tmp_path / "out" / "manifest.json").read_bytes()) == man
    assert got.custom() == {
        "name": "cabinet-agent",
        "version": "1.2.0",
        "counter": 7,
        "boards": ["sim", "rpi4_rs485"],
        "python": "3.11",
    }


@pytest.mark.parametrize(
    "field,value,words",
    [
        ("format", 2, "format"),
        ("version", "1.2; rm -rf", "version"),
        ("counter", 0, "counter"),
        ("counter", True, "counter"),
        ("boards", [], "boards"),
        ("boards", ["Bad Board"], "boards"),
        ("python", "python3", "python"),
        ("project_wheel", "other.whl", "project_wheel"),
        ("installer_wheel", "cabinet_agent-1.2.0-py3-none-any.whl", "installer_wheel"),
    ],
)
def test_manifest_fields_checked(tmp_path, field, value, words):
    with pytest.raises(mf.ManifestError, match=words):
        mf.parse(_manifest(_wheels(tmp_path), **{field: value}))


def test_manifest_wheel_entries_checked(tmp_path):
    files = _wheels(tmp_path)
    for bad, words in [
        ({"../evil.whl": {"sha256": "0" * 64, "size": 1}}, "not a wheel file name"),
        ({"a.whl": {"sha256": "XYZ", "size": 1}}, "sha256"),
        ({"a.whl": {"sha256": "0" * 64, "size": -1}}, "size"),
    ]:
        d = _manifest(files)
        d["wheels"].update(bad)
        with pytest.raises(mf.ManifestError, match=words):
            mf.parse(d)
    with pytest.raises(mf.ManifestError, match="not JSON"):
        mf.parse(b"{nope")


def _tamper(tmp_path, members):
    """A bundle with the given (TarInfo, bytes|None) members after a valid manifest."""
    files = _wheels(tmp_path)
    man = mf.parse(_manifest(files))
    path = tmp_path / "bad.bundle"
    with tarfile.open(path, "w") as tar:
        body = man.to_json()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
        for info, data in members(files):
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _member(name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


@pytest.mark.parametrize(
    "case,words",
    [
        ("tampered", "SHA-256 differs"),
        ("missing", "missing"),
        ("extra", "not a wheel listed"),
        ("traversal", "not a wheel listed"),
        ("symlink", "not a regular file"),
        ("twice", "twice"),
        ("size", "bytes, the manifest says"),
    ],
)
def test_lying_bundles_refused(tmp_path, case, words):
    def members(files):
        ok = [_member(f"wheels/{f.name}", f.read_bytes()) for f in files]
        if case == "tampered":
            name, data = ok[2][0].name, bytearray(ok[2][1])
            data[5] ^= 1
            ok[2] = _member(name, bytes(data))
        elif case == "missing":
            ok.pop()
        elif case == "extra":
            ok.append(_member("wheels/extra-1.0-py3-none-any.whl", b"x"))
        elif case == "traversal":
            ok.append(_member(f"wheels/../{files[0].name}", b"x"))
        elif case == "symlink":
            info = tarfile.TarInfo(f"wheels/{files[2].name}")
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            ok[2] = (info, None)
        elif case == "twice":
            ok.append(ok[0])
        elif case == "size":
            ok[2] = _member(ok[2][0].name, ok[2][1] + b"more")
        return ok

    b = _tamper(tmp_path, members)
    with pytest.raises(bundle.BundleError, match=words):
        bundle.extract(b, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing half-unpacked is left


def test_not_a_bundle(tmp_path):
    p = tmp_path / "junk.bundle"
    p.write_bytes(b"\0" * 1024 + b"junk")
    with pytest.raises(bundle.BundleError):
        bundle.extract(p, tmp_path / "out")
    files = _wheels(tmp_path)
    path = tmp_path / "nomanifest.bundle"
    with tarfile.open(path, "w") as tar:
        info, data = _member(f"wheels/{files[0].name}", files[0].read_bytes())
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(bundle.BundleError, match="first member must be"):
        bundle.read_manifest(path)
    assert json.loads(mf.parse(_manifest(files)).to_json())["counter"] == 7
