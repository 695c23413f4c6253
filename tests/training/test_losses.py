"""The training losses: the paper's formula, and the per-channel normalisation of the style terms."""

from __future__ import annotations

import torch

from training.losses import channel_scales, style_losses


class FakeEncoder(torch.nn.Module):
    """features(x): four 'layers' whose channels have very different loudness, like our VGG."""

    def __init__(self) -> None:
        super().__init__()
        self.gain = [torch.tensor([1.0, 1.0, 40.0]), torch.tensor([0.5, 2.0, 1.0]),
                     torch.tensor([1.0, 1.0, 1.0]), torch.tensor([3.0, 1.0, 0.2])]

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [x.relu() * g.view(1, -1, 1, 1) + 0.1 for g in self.gain]


def test_channel_scales_make_each_channel_average_one():
    enc = FakeEncoder()
    images = torch.rand(10, 3, 8, 8)
    scales = channel_scales(enc, images, batch=4)
    for f, k in zip(enc.features(images), scales):
        per_channel = f.mean(dim=(0, 2, 3)) / k
        assert torch.allclose(per_channel, torch.ones(3), atol=1e-5)


def test_scaled_style_loss_equals_the_loss_of_rescaled_features():
    torch.manual_seed(0)
    out = [torch.rand(2, 3, 8, 8) * g for g in (1.0, 5.0, 40.0, 2.0)]
    sty = [torch.rand(2, 3, 8, 8) * g for g in (2.0, 1.0, 30.0, 1.0)]
    scales = [torch.tensor([1.0, 2.0, 40.0]), torch.tensor([1.0, 1.0, 1.0]),
              torch.tensor([10.0, 20.0, 30.0]), torch.tensor([0.5, 1.0, 2.0])]
    scaled = style_losses(out, sty, scales)
    by_hand = style_losses([o / k.view(1, -1, 1, 1) for o, k in zip(out, scales)],
                           [s / k.view(1, -1, 1, 1) for s, k in zip(sty, scales)])
    for a, b in zip(scaled, by_hand):
        assert torch.allclose(a, b, rtol=1e-3)  # equal up to the eps inside the std


def test_a_loud_channel_no_longer_dominates():
    """One channel 40x too loud: unscaled it carries nearly all of the loss, scaled about a third."""
    enc = FakeEncoder()
    a, b = torch.rand(4, 3, 16, 16), torch.rand(4, 3, 16, 16) * 0.5
    scales = channel_scales(enc, torch.cat([a, b]))

    def share_of_loud(sc):
        fa, fb = enc.features(a)[0], enc.features(b)[0]
        per = [style_losses([fa[:, c:c + 1]], [fb[:, c:c + 1]], None if sc is None else [sc[0][c:c + 1]])[0]
               for c in range(3)]
        return float(per[2] / sum(per))

    assert share_of_loud(None) > 0.99
    assert share_of_loud(scales) < 0.5
