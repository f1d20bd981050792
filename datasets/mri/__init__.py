"""MRI data: random-ellipse phantom simulator and fastMRI HDF5 writer / validating loader."""

from .fastmri_io import (
    FastMRIFileInfo,
    MRISlice,
    inspect_fastmri_file,
    iter_fastmri_slices,
    read_fastmri_metadata,
    write_fastmri_h5,
    write_phantom_dataset,
)
from .phantoms import (
    PhantomBatch,
    add_noise,
    ellipse_phantom,
    estimate_noise_sigma,
    simulate_phantoms,
)

__all__ = [
    "FastMRIFileInfo",
    "MRISlice",
    "PhantomBatch",
    "add_noise",
    "ellipse_phantom",
    "estimate_noise_sigma",
    "inspect_fastmri_file",
    "iter_fastmri_slices",
    "read_fastmri_metadata",
    "simulate_phantoms",
    "write_fastmri_h5",
    "write_phantom_dataset",
]
