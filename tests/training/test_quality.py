import torch

from helpers import without_direction
from model.decoder import random_decoder
from training.quality import flip_gap, grid_penalty, grid_ratio, luma_power, mirrored


def grid_of(images: torch.Tensor) -> float:
    return grid_ratio(luma_power(images))


def smooth_images(n: int = 4, size: int = 64) -> torch.Tensor:
    """Random images without any pixel-aligned period: upsampled noise."""
    torch.manual_seed(0)
    low = torch.rand(n, 3, size // 4, size // 4)
    return torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)


def test_no_grid_is_about_one() -> None:
    assert 0.5 < grid_of(smooth_images()) < 1.5


def test_an_8px_grid_is_found() -> None:
    images = smooth_images()
    grid = torch.zeros(64, 64)
    grid[::8, :] = 1
    grid[:, ::8] = 1
    assert grid_of((0.9 * images + 0.1 * grid).clamp(0, 1)) > 3
    # the same lines every 7 px do not line up with an 8-px lattice
    other = torch.zeros(64, 64)
    other[::7, :] = 1
    other[:, ::7] = 1
    assert grid_of((0.9 * images + 0.1 * other).clamp(0, 1)) < 1.5


def test_grid_penalty_is_small_without_a_grid_and_descends_to_remove_one() -> None:
    images = smooth_images()
    grid = torch.zeros(64, 64)
    grid[::8, :] = 1
    grid[:, ::8] = 1
    assert grid_penalty(images) < 0.2
    assert grid_penalty(torch.full((2, 3, 64, 64), 0.5)) == 0  # flat images: no grid, and no NaN
    x = (0.9 * images + 0.1 * grid).requires_grad_(True)
    assert grid_penalty(x) > 0.5
    opt = torch.optim.Adam([x], lr=0.01)
    for _ in range(50):
        opt.zero_grad()
        grid_penalty(x).backward()
        opt.step()
    assert grid_of(x.detach().clamp(0, 1)) < 1.5


def test_mirrored_mirrors_each_third_of_a_batch_about_its_own_axis() -> None:
    x = torch.rand(8, 3, 8, 8)
    y = mirrored(x)
    assert torch.equal(y[:3], x[:3].flip(2)) and torch.equal(y[3:6], x[3:6].flip(3))
    assert torch.equal(y[6:], x[6:].transpose(2, 3))
    assert torch.equal(mirrored(y), x)  # its own inverse
    wide = torch.rand(3, 3, 4, 6)  # not square: the last third turns 180 degrees instead
    assert torch.equal(mirrored(wide)[2:], wide[2:].flip(2, 3)) and torch.equal(mirrored(mirrored(wide)), wide)


def test_flip_gap_is_zero_only_for_a_decoder_without_a_direction() -> None:
    torch.manual_seed(0)
    target = torch.rand(6, 512, 4, 4)
    decoder = random_decoder(0).eval()
    with torch.no_grad():
        out = decoder(target)
        gap = flip_gap(out, decoder(mirrored(target)))
        detail = (out - out.mean(dim=(2, 3), keepdim=True)).pow(2).mean()  # each picture's own variance
        assert gap > 0.5 * detail  # default init: kernels have an up, a left and a vertical
        without_direction(decoder)
        assert flip_gap(decoder(target), decoder(mirrored(target))) < 1e-4 * gap
