"""Augmented training (paper section 5, eq. 4).

After `gen_start_step`, the trainer carries `n_augmented` latents. Each step it
decodes them into variants that join the training batch; after the step each
carried latent is replaced, with probability p_sampled, by the sampled latent of a
training example of this batch (chosen without replacement), else by the sampled
latent of the variant generated from it. Average lifetime: 1 / p_sampled hops.
"""
from __future__ import annotations

import torch


class AugmentedLatents:
    def __init__(self, n: int, p_sampled: float):
        self.n, self.p_sampled = n, p_sampled
        self.z: torch.Tensor | None = None  # (n, D) once initialised

    def active(self) -> bool:
        return self.n > 0 and self.z is not None

    def start(self, z_train: torch.Tensor, generator: torch.Generator) -> None:
        """Initialise from the sampled latents of the current training batch."""
        self.z = _pick(z_train, self.n, generator).detach().clone()

    def update(self, z_train: torch.Tensor, z_variants: torch.Tensor, generator: torch.Generator) -> None:
        """z_train (B, D): this batch's sampled latents; z_variants (n, D): the variants'."""
        reset = torch.rand(self.n, generator=generator, device=z_train.device) < self.p_sampled
        fresh = _pick(z_train, self.n, generator)
        self.z = torch.where(reset.unsqueeze(1), fresh, z_variants).detach().clone()

    def state(self) -> dict[str, torch.Tensor]:
        return {} if self.z is None else {"augment.z": self.z.cpu()}

    def load(self, tensors: dict[str, torch.Tensor], device: torch.device) -> None:
        if "augment.z" in tensors:
            self.z = tensors["augment.z"].to(device)


def _pick(z: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """n rows of z without replacement (with replacement only if n exceeds the batch)."""
    b = z.shape[0]
    idx = torch.randperm(b, generator=generator, device=z.device)[:n]
    if n > b:
        extra = torch.randint(0, b, (n - b,), generator=generator, device=z.device)
        idx = torch.cat([idx, extra])
    return z[idx]
