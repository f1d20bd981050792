"""MRI benchmark: zero-filled, TV, every diffusion method and active acquisition on held-out
simulated phantoms; writes the ``<!-- mri:start -->`` section of ``docs/benchmarks.md``.

    python benchmarks/mri.py            # full settings (64/128, 1/8 coils, 4x/8x)
    python benchmarks/mri.py --fast     # CI's smallest setting
    python benchmarks/mri.py --help     # sizes, coils, methods, held-out counts

The implementation is :func:`sciffusion.domains.mri.benchmark.main` (also
``sciffusion mri benchmark``).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

if __name__ == "__main__":
    from sciffusion.domains.mri.benchmark import main

    main()
