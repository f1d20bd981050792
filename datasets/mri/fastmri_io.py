"""fastMRI-format HDF5: a writer for simulated volumes and a validating, read-only loader.

File layout (what ``fastmri.data.SliceDataset`` reads; fastMRI@91f2df4, ``mri_data.py``):

============================  =====================================================================
``kspace``                    complex64 ``(S, H, W)`` single coil / ``(S, C, H, W)`` multi coil;
                              rows ``H`` are the (2x oversampled) readout, masks act on columns
``reconstruction_esc``        float32 ``(S, h, w)`` single-coil target ``|ifft2c(kspace)|`` cropped
``reconstruction_rss``        float32 ``(S, h, w)`` multi-coil target, RSS of the coil images
``ismrmrd_header``            ISMRMRD XML: ``encodedSpace/matrixSize`` = ``(H, W, 1)``,
                              ``reconSpace/matrixSize`` = ``(h, w, 1)``, ``kspace_encoding_step_1``
                              ``center = W // 2``, ``maximum = W - 1`` (padding ``(0, W)``)
attrs                         ``max`` (target volume max, the metrics' data range), ``norm``
                              (target volume 2-norm), ``acquisition``, ``patient_id``
test split                    ``mask`` float32 ``(W,)``, attrs ``acceleration``,
                              ``num_low_frequency``; k-space zero outside the mask; no target
============================  =====================================================================

Raw scanner k-space is about 1e-5 to 1e-3 in magnitude (fastMRI #194): networks and step sizes
tuned on unit-scale images need ``normalise="max"`` (scale by ``1 / attrs["max"]``), and results
must be divided by the returned ``scale`` to compare with the file's targets.
"""

from __future__ import annotations

import hashlib
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from sciffusion._files import atomic_path
from sciffusion.domains.mri.fourier import crop_readout, ifft2c, oversample_readout, rss
from sciffusion.domains.mri.masks import make_mask
from torch import Tensor

__all__ = [
    "FastMRIFileInfo",
    "MRISlice",
    "file_checksum",
    "inspect_fastmri_file",
    "ismrmrd_header",
    "iter_fastmri_slices",
    "read_fastmri_metadata",
    "write_fastmri_h5",
    "write_phantom_dataset",
]

ISMRMRD_NS = "http://www.ismrm.org/ISMRMRD"
TARGET_KEYS = {"singlecoil": "reconstruction_esc", "multicoil": "reconstruction_rss"}


# -- header ------------------------------------------------------------------------------------
def ismrmrd_header(
    encoding_size: tuple[int, int, int],
    recon_size: tuple[int, int, int],
    *,
    center: int | None = None,
    maximum: int | None = None,
) -> bytes:
    """Minimal ISMRMRD XML header that fastMRI's metadata parser reads.

    ``encoding_size = (H, W, 1)`` (readout rows, phase-encode columns), ``recon_size`` the target
    size; ``kspace_encoding_step_1`` limits default to ``center = W // 2``, ``maximum = W - 1``,
    which gives ``padding_left = W // 2 - center = 0`` and ``padding_right = padding_left +
    maximum + 1 = W``.
    """
    w = encoding_size[1]
    center = w // 2 if center is None else center
    maximum = w - 1 if maximum is None else maximum
    ET.register_namespace("", ISMRMRD_NS)
    q = f"{{{ISMRMRD_NS}}}"
    root = ET.Element(f"{q}ismrmrdHeader")
    enc = ET.SubElement(root, f"{q}encoding")
    for space, size in (("encodedSpace", encoding_size), ("reconSpace", recon_size)):
        sp = ET.SubElement(enc, f"{q}{space}")
        ms = ET.SubElement(sp, f"{q}matrixSize")
        for axis, v in zip("xyz", size, strict=True):
            ET.SubElement(ms, f"{q}{axis}").text = str(int(v))
    lim = ET.SubElement(enc, f"{q}encodingLimits")
    step = ET.SubElement(lim, f"{q}kspace_encoding_step_1")
    for tag, v in (("minimum", 0), ("maximum", maximum), ("center", center)):
        ET.SubElement(step, f"{q}{tag}").text = str(int(v))
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _parse_header(raw: Any, fname: str) -> dict[str, Any]:
    """fastMRI's ``SliceDataset._retrieve_metadata`` logic with errors that name the file."""
    try:
        root = ET.fromstring(raw if isinstance(raw, (bytes, str)) else bytes(raw))
    except ET.ParseError as e:
        raise ValueError(f"{fname}: ismrmrd_header is not valid XML ({e})") from None
    ns = {"m": ISMRMRD_NS}

    def get(*path: str) -> int:
        node = root.find("." + "".join(f"//m:{p}" for p in path), ns)
        if node is None or node.text is None:
            raise ValueError(
                f"{fname}: ismrmrd_header lacks {'/'.join(path)} (namespace {ISMRMRD_NS});"
                " fastMRI needs encoding/encodedSpace, reconSpace and encodingLimits"
            )
        return int(node.text)

    enc = tuple(get("encoding", "encodedSpace", "matrixSize", a) for a in "xyz")
    rec = tuple(get("encoding", "reconSpace", "matrixSize", a) for a in "xyz")
    center = get("encoding", "encodingLimits", "kspace_encoding_step_1", "center")
    maximum = get("encoding", "encodingLimits", "kspace_encoding_step_1", "maximum") + 1
    left = enc[1] // 2 - center
    return {
        "padding_left": left,
        "padding_right": left + maximum,
        "encoding_size": enc,
        "recon_size": rec,
    }


# -- writer ------------------------------------------------------------------------------------
def _np(v: Tensor | np.ndarray) -> np.ndarray:
    return v.detach().cpu().numpy() if isinstance(v, Tensor) else np.asarray(v)


def write_fastmri_h5(
    path: str | os.PathLike,
    kspace: Tensor | np.ndarray,
    *,
    target: Tensor | np.ndarray | None = None,
    mask: Tensor | np.ndarray | None = None,
    acceleration: float | None = None,
    num_low_frequency: int | None = None,
    recon_size: tuple[int, int] | None = None,
    acquisition: str = "PHANTOM_ELLIPSE",
    patient_id: str | None = None,
    force: bool = False,
) -> Path:
    """Write one volume as a fastMRI HDF5 file, atomically (never a half-written file).

    Parameters
    ----------
    path : path
        Output ``.h5`` file; an existing file is an error unless ``force``.
    kspace : Tensor or ndarray
        Complex ``(S, H, W)`` (single coil) or ``(S, C, H, W)`` (multi coil), fully sampled.
    target : Tensor or ndarray, optional
        Real ``(S, h, w)``: stored as ``reconstruction_esc`` / ``_rss``; sets attrs ``max`` and
        ``norm``. Required unless ``mask`` is given (test split).
    mask : Tensor or ndarray, optional
        Column mask ``(W,)``: writes a test-split file (k-space zeroed outside the mask, no target,
        attrs ``acceleration`` and ``num_low_frequency`` required).
    recon_size : (int, int), optional
        ``reconSpace`` size; default the target's ``(h, w)``, else ``(H // 2, W)``.
    acquisition, patient_id : str
        Stored attrs (``patient_id`` defaults to a hash of the file name).
    force : bool
        Overwrite an existing file.
    """
    path = Path(path)
    import h5py

    k = _np(kspace)
    if not np.iscomplexobj(k) or k.ndim not in (3, 4):
        raise ValueError(
            f"kspace must be complex (S, H, W) or (S, C, H, W); got {k.shape} of dtype {k.dtype}"
        )
    if not np.isfinite(k).all():
        raise ValueError("kspace contains NaN or inf; refusing to write it")
    challenge = "singlecoil" if k.ndim == 3 else "multicoil"
    n_slices, h, w = k.shape[0], k.shape[-2], k.shape[-1]
    attrs: dict[str, Any] = {
        "acquisition": acquisition,
        "patient_id": patient_id or hashlib.sha1(path.name.encode()).hexdigest()[:16],
    }
    if mask is None:
        if target is None:
            raise ValueError(
                "a training/validation file needs target=; pass mask= for a test split"
            )
        t = _np(target).astype(np.float32)
        if t.ndim != 3 or t.shape[0] != n_slices or np.iscomplexobj(t):
            raise ValueError(
                f"target must be real (S, h, w) with S={n_slices} slices; got {t.shape}"
            )
        attrs["max"] = float(t.max())
        attrs["norm"] = float(np.linalg.norm(t))
        rsize = recon_size or t.shape[-2:]
    else:
        if target is not None:
            raise ValueError("test-split files carry no target; pass either mask= or target=")
        if acceleration is None or num_low_frequency is None:
            raise ValueError("a test-split file needs acceleration= and num_low_frequency=")
        m = _np(mask).astype(np.float32).reshape(-1)
        if m.shape[0] != w or not np.isin(m, (0.0, 1.0)).all():
            raise ValueError(f"mask must be a 0/1 column mask of width {w}; got shape {m.shape}")
        k = k * m  # a new array: unsampled columns are not stored
        attrs["acceleration"] = float(acceleration)
        attrs["num_low_frequency"] = int(num_low_frequency)
        rsize = recon_size or (h // 2, w)
    header = ismrmrd_header((h, w, 1), (int(rsize[0]), int(rsize[1]), 1))
    with atomic_path(path, force=force) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("kspace", data=k.astype(np.complex64))
        if mask is None:
            f.create_dataset(TARGET_KEYS[challenge], data=t)
        else:
            f.create_dataset("mask", data=m)
        f.create_dataset("ismrmrd_header", data=np.bytes_(header))
        for key, v in attrs.items():
            f.attrs[key] = v
    return path


def write_phantom_dataset(
    root: str | os.PathLike,
    n_volumes: int,
    *,
    n_slices: int,
    size: int | tuple[int, int],
    generator: torch.Generator,
    coils: int | None = None,
    sigma: float = 0.01,
    split: str = "train",
    mask_kind: str = "random",
    acceleration: float = 4,
    center_fraction: float = 0.08,
    prefix: str = "phantom",
    force: bool = False,
) -> list[Path]:
    """Simulate ellipse-phantom volumes and write them as fastMRI files ``root/{prefix}_NNNN.h5``.

    k-space gets a 2x-oversampled readout (``(S, [C,] 2h, w)``, the image zero-padded along rows)
    and targets follow fastMRI: ``|ifft2c(kspace)|`` (or its coil RSS) cropped to ``(h, w)``,
    from the stored (noisy) k-space. Test-split files get a fastMRI mask seeded like fastMRI's
    transforms do (``seed = tuple(map(ord, file_name))``). Keep ``root`` for ``.h5`` files only:
    ``SliceDataset`` opens every file in it.
    """
    from .phantoms import simulate_phantoms

    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test'; got {split!r}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n_volumes):
        path = root / f"{prefix}_{i:04d}.h5"
        if path.exists() and not force:
            raise FileExistsError(f"{path} exists; pass force=True (--force) to overwrite it")
        pb = simulate_phantoms(n_slices, size, generator=generator, coils=coils, sigma=sigma)
        h = pb.kspace.shape[-2]
        kspace = oversample_readout(pb.kspace, 2 * h)
        img = ifft2c(kspace)
        img = img[..., (2 * h - h) // 2 : (2 * h - h) // 2 + h, :]
        target = img.abs() if coils is None else rss(img, dim=1)
        if split == "train":
            write_fastmri_h5(path, kspace, target=target, force=force)
        else:
            mk = make_mask(
                mask_kind,
                kspace.shape[-1],
                acceleration=acceleration,
                center_fraction=center_fraction,
                seed=tuple(map(ord, path.name)),
            )
            write_fastmri_h5(
                path,
                kspace,
                mask=mk.mask,
                acceleration=acceleration,
                num_low_frequency=mk.num_low_frequencies,
                recon_size=(h, kspace.shape[-1]),
                force=force,
            )
        paths.append(path)
    return paths


# -- loader ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FastMRIFileInfo:
    """What :func:`inspect_fastmri_file` found (after validation)."""

    path: Path
    challenge: str  # "singlecoil" | "multicoil"
    n_slices: int
    n_coils: int | None
    kspace_shape: tuple[int, ...]  # per slice: ([C,] H, W)
    target_key: str | None  # None for test-split files
    target_shape: tuple[int, ...] | None  # per slice (h, w)
    has_mask: bool
    metadata: dict[str, Any] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)


class MRISlice(NamedTuple):
    """One slice of a fastMRI file (tensors are fresh copies; the file is never written)."""

    kspace: Tensor  # complex64 ([C,] H, W), multiplied by `scale`
    target: Tensor | None  # float32 (h, w), multiplied by `scale`; None in the test split
    mask: Tensor | None  # bool (W,) from the test split, else None
    attrs: dict[str, Any]  # the file's attrs
    metadata: dict[str, Any]  # padding_left/right, encoding_size, recon_size (fastMRI's names)
    scale: float  # divide reconstructions by this to compare with the file's values
    fname: str
    slice: int


def read_fastmri_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """fastMRI's metadata (``padding_left``, ``padding_right``, ``encoding_size``, ``recon_size``)
    from the file's ``ismrmrd_header``, plus its attrs, as ``SliceDataset`` builds it."""
    info = inspect_fastmri_file(path)
    return {**info.metadata, **info.attrs}


def inspect_fastmri_file(
    path: str | os.PathLike, *, challenge: str | None = None
) -> FastMRIFileInfo:
    """Open a fastMRI file read-only and validate its keys, dtypes and shapes.

    Raises ``ValueError`` / ``KeyError`` naming the file and the problem: missing ``kspace`` or
    ``ismrmrd_header``, k-space that is not complex ``(S, H, W)`` / ``(S, C, H, W)``, a
    ``challenge`` that does not match the k-space rank, a target that is not real ``(S, h, w)``,
    a ``mask`` whose width differs from the k-space width.
    """
    import h5py

    path = Path(path)
    if challenge is not None and challenge not in TARGET_KEYS:
        raise ValueError(f"challenge must be 'singlecoil' or 'multicoil'; got {challenge!r}")
    if not path.is_file():
        raise FileNotFoundError(f"{path} is not a file")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise ValueError(f"{path} is not a readable HDF5 file ({e})") from None
    with f:
        keys = set(f.keys())
        for key in ("kspace", "ismrmrd_header"):
            if key not in keys:
                raise KeyError(
                    f"{path.name}: missing dataset {key!r} (has {sorted(keys)}); a fastMRI file"
                    " needs kspace and ismrmrd_header"
                )
        ks = f["kspace"]
        if ks.dtype.kind != "c":
            raise ValueError(
                f"{path.name}: kspace has dtype {ks.dtype}; fastMRI k-space is complex64. If it is"
                " stored as (..., 2) real pairs, convert with numpy: k[..., 0] + 1j * k[..., 1]"
            )
        if ks.ndim not in (3, 4):
            raise ValueError(
                f"{path.name}: kspace has shape {ks.shape}; expected (S, H, W) single coil or"
                " (S, C, H, W) multi coil"
            )
        found = "singlecoil" if ks.ndim == 3 else "multicoil"
        if challenge is not None and challenge != found:
            raise ValueError(
                f"{path.name}: challenge={challenge!r} but kspace {ks.shape} is {found} data;"
                f" pass challenge={found!r}"
            )
        n_slices, w = ks.shape[0], ks.shape[-1]
        tkey = TARGET_KEYS[found]
        tshape = None
        if tkey in keys:
            t = f[tkey]
            if t.dtype.kind != "f" or t.ndim != 3 or t.shape[0] != n_slices:
                raise ValueError(
                    f"{path.name}: {tkey} must be real float (S, h, w) with S={n_slices}; got"
                    f" shape {t.shape} of dtype {t.dtype}"
                )
            tshape = tuple(t.shape[1:])
        has_mask = "mask" in keys
        if has_mask:
            m = f["mask"]
            if m.ndim != 1 or m.shape[0] != w:
                raise ValueError(
                    f"{path.name}: mask has shape {m.shape} but kspace has {w} columns; the mask"
                    " must be (W,)"
                )
        if tshape is None and not has_mask:
            raise KeyError(
                f"{path.name}: no {tkey!r} target and no 'mask': neither a train/val file nor a"
                " test-split file (did you pick the wrong challenge?)"
            )
        metadata = _parse_header(f["ismrmrd_header"][()], path.name)
        attrs = dict(f.attrs)
    return FastMRIFileInfo(
        path=path,
        challenge=found,
        n_slices=n_slices,
        n_coils=None if found == "singlecoil" else ks.shape[1],
        kspace_shape=tuple(ks.shape[1:]),
        target_key=tkey if tshape is not None else None,
        target_shape=tshape,
        has_mask=has_mask,
        metadata=metadata,
        attrs=attrs,
    )


def _files(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    if isinstance(paths, (str, os.PathLike)):
        p = Path(paths)
        if p.is_dir():
            files = sorted(q for q in p.iterdir() if q.suffix == ".h5")
            if not files:
                raise FileNotFoundError(f"{p} holds no .h5 files")
            return files
        return [p]
    return [Path(q) for q in paths]


def iter_fastmri_slices(
    paths: str | os.PathLike | Iterable[str | os.PathLike],
    *,
    challenge: str | None = None,
    normalise: str | None = None,
    crop_oversampling: bool = False,
) -> Iterator[MRISlice]:
    """Yield the slices of fastMRI files (a file, a folder of ``.h5`` files or a list).

    Every file is validated first (:func:`inspect_fastmri_file`) and opened read-only; each
    slice's k-space is checked for NaN/inf as it is read.

    Parameters
    ----------
    challenge : str, optional
        ``"singlecoil"`` or ``"multicoil"``: checked against each file.
    normalise : {None, "max"}
        ``"max"``: multiply k-space and target by ``scale = 1 / attrs["max"]`` (the target volume
        max, fastMRI's data range); for test-split files without ``max``, by ``1 /`` the volume max
        of the zero-filled magnitude (RSS) image cropped to ``recon_size``.
    crop_oversampling : bool
        Remove the readout oversampling: k-space rows are cut to the target's (or
        ``recon_size``'s) height by :func:`~sciffusion.domains.mri.fourier.crop_readout`, so
        single-image operators of that size apply directly.
    """
    if normalise not in (None, "max"):
        raise ValueError(f"normalise must be None or 'max'; got {normalise!r}")
    import h5py

    for path in _files(paths):
        info = inspect_fastmri_file(path, challenge=challenge)
        rows = (info.target_shape or info.metadata["recon_size"][:2])[0]
        with h5py.File(path, "r") as f:
            scale = 1.0
            if normalise == "max":
                vmax = info.attrs.get("max")
                if vmax is None:
                    vmax = max(
                        float(_zf_magnitude(_read_kspace(f, i, path), rows).max())
                        for i in range(info.n_slices)
                    )
                if not (np.isfinite(vmax) and vmax > 0):
                    raise ValueError(f"{path.name}: cannot normalise, volume max is {vmax}")
                scale = 1.0 / float(vmax)
            mask = None
            if info.has_mask:
                mask = torch.from_numpy(np.asarray(f["mask"][()])).reshape(-1) != 0
            for i in range(info.n_slices):
                k = _read_kspace(f, i, path)
                if crop_oversampling and k.shape[-2] > rows:
                    k = crop_readout(k, rows)
                target = None
                if info.target_key is not None:
                    target = torch.from_numpy(np.array(f[info.target_key][i], dtype=np.float32))
                    target = target * scale
                yield MRISlice(
                    kspace=k * scale,
                    target=target,
                    mask=mask,
                    attrs=dict(info.attrs),
                    metadata=dict(info.metadata),
                    scale=scale,
                    fname=path.name,
                    slice=i,
                )


def _read_kspace(f: Any, i: int, path: Path) -> Tensor:
    k = torch.from_numpy(np.array(f["kspace"][i], dtype=np.complex64))
    bad = ~torch.isfinite(torch.view_as_real(k))
    if bool(bad.any()):
        raise ValueError(
            f"{path.name} slice {i}: k-space has {int(bad.any(-1).sum())} non-finite samples"
            " (NaN/inf); the file is corrupt or was written with a bad scaling"
        )
    return k


def _zf_magnitude(k: Tensor, rows: int) -> Tensor:
    img = ifft2c(k)
    top = (img.shape[-2] - rows) // 2
    img = img[..., top : top + rows, :]
    return img.abs() if img.ndim == 2 else rss(img, dim=0)


def file_checksum(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (the tests use it to show inputs are never modified)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
