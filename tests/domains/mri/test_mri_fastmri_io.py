"""fastMRI HDF5: fastMRI's own SliceDataset and transforms read our files; our loader validates
users' files with clear errors and never modifies them."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from fastmri.data import SliceDataset
from fastmri.data.subsample import RandomMaskFunc
from fastmri.data.transforms import UnetDataTransform, VarNetDataTransform
from sciffusion.datasets.mri import (
    inspect_fastmri_file,
    iter_fastmri_slices,
    read_fastmri_metadata,
    write_fastmri_h5,
    write_phantom_dataset,
)
from sciffusion.datasets.mri.fastmri_io import _parse_header, file_checksum, ismrmrd_header
from sciffusion.domains.mri import crop_readout, ifft2c, make_mask, rss

CHALLENGES = {"singlecoil": None, "multicoil": 4}


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    """Two train volumes per challenge and one single-coil test-split volume (24 x 20 images)."""
    base = tmp_path_factory.mktemp("fastmri")
    gen = torch.Generator().manual_seed(0)
    out = {}
    for ch, coils in CHALLENGES.items():
        out[ch] = base / ch
        write_phantom_dataset(out[ch], 2, n_slices=3, size=(24, 20), generator=gen, coils=coils)
    out["test"] = base / "test"
    write_phantom_dataset(
        out["test"], 1, n_slices=2, size=(24, 20), generator=gen, split="test", acceleration=4
    )
    return out


@pytest.mark.parametrize("challenge", list(CHALLENGES))
def test_slice_dataset_with_unet_transform(roots, challenge):
    ds = SliceDataset(roots[challenge], challenge, transform=UnetDataTransform(challenge))
    assert len(ds) == 6
    for i in (0, 4):
        s = ds[i]
        assert s.image.shape == s.target.shape == (24, 20)
        # fully sampled zero-filled image == stored target (fastMRI's own convention)
        torch.testing.assert_close(s.image, s.target, atol=1e-5, rtol=0)
    masked = SliceDataset(
        roots[challenge],
        challenge,
        transform=UnetDataTransform(challenge, RandomMaskFunc([0.08], [4])),
    )[1]
    assert masked.image.shape == (24, 20) and not torch.allclose(masked.image, masked.target)


@pytest.mark.parametrize("challenge", list(CHALLENGES))
def test_slice_dataset_with_varnet_transform(roots, challenge):
    ds = SliceDataset(
        roots[challenge], challenge, transform=VarNetDataTransform(RandomMaskFunc([0.08], [4]))
    )
    meta = ds.raw_samples[0].metadata
    assert (meta["padding_left"], meta["padding_right"]) == (0, 20)
    assert meta["encoding_size"] == (48, 20, 1) and meta["recon_size"] == (24, 20, 1)
    s = ds[2]
    shape = (48, 20, 2) if challenge == "singlecoil" else (4, 48, 20, 2)
    assert tuple(s.masked_kspace.shape) == shape
    assert s.crop_size == (24, 20) and s.mask.shape[-2] == 20
    # our metadata parser agrees with fastMRI's
    ours = read_fastmri_metadata(ds.raw_samples[0].fname)
    for key in ("padding_left", "padding_right", "encoding_size", "recon_size", "max", "norm"):
        assert ours[key] == meta[key], key
    with h5py.File(ds.raw_samples[0].fname, "r") as f:
        k = torch.from_numpy(f["kspace"][()])
        assert f["kspace"].dtype == np.complex64
        target = f["reconstruction_esc" if challenge == "singlecoil" else "reconstruction_rss"][()]
        assert target.dtype == np.float32 and f.attrs["max"] == pytest.approx(target.max())
        assert f.attrs["norm"] == pytest.approx(np.linalg.norm(target), rel=1e-6)
        assert set(f.attrs) >= {"max", "norm", "acquisition", "patient_id"}
    img = ifft2c(crop_readout(k, 24))
    mag = img.abs() if challenge == "singlecoil" else rss(img, dim=1)
    torch.testing.assert_close(mag, torch.from_numpy(target), atol=1e-5, rtol=0)


def test_test_split_file(roots):
    (path,) = sorted(roots["test"].iterdir())
    ds = SliceDataset(roots["test"], "singlecoil", transform=VarNetDataTransform())
    s = ds[0]
    ref = make_mask(
        "random", 20, acceleration=4, center_fraction=0.08, seed=tuple(map(ord, path.name))
    )
    assert torch.equal(s.mask.reshape(-1), ref.mask)
    unet = SliceDataset(roots["test"], "singlecoil", transform=UnetDataTransform("singlecoil"))[1]
    assert unet.image.shape == (24, 20)  # cropped to recon_size from the header
    info = inspect_fastmri_file(path)
    assert info.has_mask and info.target_key is None
    assert info.attrs["acceleration"] == 4 and info.attrs["num_low_frequency"] == 2
    sl = next(iter_fastmri_slices(path))
    assert torch.equal(sl.mask, ref.mask) and sl.target is None
    assert bool((sl.kspace[..., ~ref.mask] == 0).all())  # unsampled columns were not stored


def test_loader_normalises_and_crops(roots):
    slices = list(iter_fastmri_slices(roots["multicoil"], normalise="max", crop_oversampling=True))
    assert len(slices) == 6 and slices[0].kspace.shape == (4, 24, 20)
    for fname in {s.fname for s in slices}:
        vol = torch.stack([s.target for s in slices if s.fname == fname])
        assert float(vol.max()) == pytest.approx(1.0, abs=1e-6)  # volume max, not per slice
    s = slices[0]
    torch.testing.assert_close(rss(ifft2c(s.kspace), dim=0), s.target, atol=1e-5, rtol=0)
    raw = next(iter_fastmri_slices(roots["multicoil"]))
    assert raw.scale == 1.0 and raw.kspace.shape == (4, 48, 20)
    torch.testing.assert_close(raw.target * s.scale, s.target)
    # test split (no `max` attr): scale from the zero-filled volume max
    t = next(iter_fastmri_slices(roots["test"], normalise="max"))
    assert t.scale > 0 and np.isfinite(t.scale)


def test_writer_is_atomic_and_never_overwrites(tmp_path, gen):
    k = torch.randn(2, 8, 6, 2, generator=gen).contiguous()
    k = torch.view_as_complex(k)
    target = ifft2c(k).abs()
    path = write_fastmri_h5(tmp_path / "a.h5", k, target=target)
    before = file_checksum(path)
    with pytest.raises(FileExistsError, match="force"):
        write_fastmri_h5(path, k, target=target)
    assert file_checksum(path) == before
    write_phantom_dataset(tmp_path, 1, n_slices=1, size=8, generator=gen, prefix="p")
    with pytest.raises(FileExistsError, match="force"):
        write_phantom_dataset(tmp_path, 1, n_slices=1, size=8, generator=gen, prefix="p")
    write_fastmri_h5(path, 2 * k, target=target, force=True)
    assert file_checksum(path) != before
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["a.h5", "p_0000.h5"]  # no temporary leftovers
    with pytest.raises(ValueError, match="NaN or inf"):
        bad = k.clone()
        bad[0, 0, 0] = float("nan")
        write_fastmri_h5(tmp_path / "b.h5", bad, target=target)
    assert not (tmp_path / "b.h5").exists()


def test_header_parses_as_bytes_and_str():
    xml = ismrmrd_header((640, 368, 1), (320, 320, 1))
    for raw in (xml, xml.decode()):
        meta = _parse_header(raw, "x.h5")
        assert meta == {
            "padding_left": 0,
            "padding_right": 368,
            "encoding_size": (640, 368, 1),
            "recon_size": (320, 320, 1),
        }
    meta = _parse_header(ismrmrd_header((640, 372, 1), (320, 320, 1), center=180, maximum=360), "x")
    assert (meta["padding_left"], meta["padding_right"]) == (6, 367)


# -- bad input: clear errors, files untouched ------------------------------------------------
def _good(tmp_path, name="good.h5", coils=None):
    shape = (2, 8, 6) if coils is None else (2, coils, 8, 6)
    k = (np.random.default_rng(0).standard_normal(shape) + 1j).astype(np.complex64)
    path = tmp_path / name
    write_fastmri_h5(path, k, target=np.ones((2, 4, 6), dtype=np.float32))
    return path


def _edit(path, fn):
    with h5py.File(path, "r+") as f:
        fn(f)
    return path


def _replace(key, data):
    def fn(f):
        del f[key]
        f.create_dataset(key, data=data)

    return fn


BAD = {
    "no kspace": (lambda f: f.__delitem__("kspace"), KeyError, "missing dataset 'kspace'"),
    "no header": (lambda f: f.__delitem__("ismrmrd_header"), KeyError, "ismrmrd_header"),
    "real kspace": (
        _replace("kspace", np.zeros((2, 8, 6, 2), np.float32)),
        ValueError,
        r"dtype float32; fastMRI k-space is complex64",
    ),
    "kspace rank": (
        _replace("kspace", np.zeros((8, 6), np.complex64)),
        ValueError,
        r"expected \(S, H, W\) single coil",
    ),
    "complex target": (
        _replace("reconstruction_esc", np.zeros((2, 4, 6), np.complex64)),
        ValueError,
        "must be real float",
    ),
    "target slices": (
        _replace("reconstruction_esc", np.zeros((3, 4, 6), np.float32)),
        ValueError,
        r"with S=2",
    ),
    "mask width": (
        lambda f: f.create_dataset("mask", data=np.ones(5, np.float32)),
        ValueError,
        "mask has shape",
    ),
    "no target": (
        lambda f: f.__delitem__("reconstruction_esc"),
        KeyError,
        "no 'reconstruction_esc'",
    ),
    "broken header": (_replace("ismrmrd_header", np.bytes_(b"<oops")), ValueError, "not valid XML"),
    "header fields": (
        _replace("ismrmrd_header", np.bytes_(b"<a xmlns='http://www.ismrm.org/ISMRMRD'/>")),
        ValueError,
        "lacks encoding/encodedSpace",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_files_fail_clearly_and_stay_untouched(tmp_path, case):
    edit, exc, msg = BAD[case]
    path = _edit(_good(tmp_path), edit)
    before = file_checksum(path)
    with pytest.raises(exc, match=msg):
        list(iter_fastmri_slices(path))
    assert file_checksum(path) == before


def test_non_finite_kspace_names_the_slice(tmp_path):
    def poison(f):
        k = f["kspace"][()]
        k[1, 2, 3] = np.nan
        f["kspace"][...] = k

    path = _edit(_good(tmp_path), poison)
    before = file_checksum(path)
    it = iter_fastmri_slices(path)
    assert next(it).slice == 0
    with pytest.raises(ValueError, match="slice 1: k-space has 1 non-finite"):
        next(it)
    assert file_checksum(path) == before


def test_challenge_mismatch_and_good_files_unmodified(tmp_path):
    single, multi = _good(tmp_path, "s.h5"), _good(tmp_path, "m.h5", coils=3)
    sums = {p: file_checksum(p) for p in (single, multi)}
    with pytest.raises(ValueError, match="pass challenge='multicoil'"):
        inspect_fastmri_file(multi, challenge="singlecoil")
    assert inspect_fastmri_file(multi).target_key == "reconstruction_rss"
    odd = _edit(_good(tmp_path, "odd.h5", coils=3), lambda f: f.move("reconstruction_rss", "x"))
    with pytest.raises(KeyError, match="no 'reconstruction_rss' target and no 'mask'"):
        inspect_fastmri_file(odd)
    slices = list(iter_fastmri_slices(single, challenge="singlecoil", normalise="max"))
    slices[0].kspace.zero_()  # tensors are copies: editing them cannot touch the file
    assert {p: file_checksum(p) for p in (single, multi)} == sums
    with pytest.raises(ValueError, match="normalise must be None or 'max'"):
        next(iter_fastmri_slices(single, normalise="std"))
    with pytest.raises(ValueError, match="challenge must be"):
        inspect_fastmri_file(single, challenge="knee")
