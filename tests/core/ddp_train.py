"""Helper for test_ddp.py: train 3 steps with 2 CPU processes (DDP, gloo) and record per rank.

Run as ``python tests/core/ddp_train.py OUT``; Lightning relaunches this script for rank 1. Each
rank writes ``OUT/rank{r}.safetensors`` (its first noise draw, its generator seed, its final
weights); rank 0 also saves the model with ``save_pretrained`` to ``OUT/model``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch


def main(out: Path) -> None:
    import sciffusion as sf
    from safetensors.torch import save_file
    from sciffusion.io import save_pretrained
    from sciffusion.nets import MLP
    from sciffusion.training import DiffusionModule, fit

    class Recording(DiffusionModule):
        first_noise: torch.Tensor | None = None

        def draw_noise(self, x0, mask, generator):
            noise = super().draw_noise(x0, mask, generator)
            if self.first_noise is None:
                self.first_noise = noise.detach().clone()
            return noise

    torch.set_num_threads(1)
    torch.manual_seed(0)  # the same initial weights on both ranks (DDP also broadcasts them)
    module = Recording(MLP(2, hidden=16, depth=1, emb_dim=8), sf.VPLinear(), lr=1e-2)
    data = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    trainer = fit(
        module,
        data,
        max_steps=3,
        batch_size=8,
        devices=2,
        strategy="ddp",
        accelerator="cpu",
        ckpt_dir=out / "ckpt",
        progress=False,
        seed=7,
    )
    rank = trainer.global_rank
    record = {
        "first_noise": module.first_noise,
        "seed": torch.tensor([module.generator.initial_seed()]),
        "ema_updates": module.ema_updates.reshape(1),
        "world_size": torch.tensor([trainer.world_size]),
    }
    record.update({f"net.{k}": v.detach().contiguous() for k, v in module.net.state_dict().items()})
    save_file(record, str(out / f"rank{rank}.safetensors"))
    if rank == 0:
        save_pretrained(module, out / "model")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
