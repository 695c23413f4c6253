import torch

from model.quality import grid_penalty, grid_ratio, luma_power


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
