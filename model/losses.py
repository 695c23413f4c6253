"""The paper's training losses (Huang & Belongie 2017, Eq. 11-13), as in the reference code.

    L = content_weight * Lc + style_weight * Ls
    Lc = MSE(f(g(t)), t)                                   at relu4_1, t = AdaIN(f(c), f(s))
    Ls = sum over relu1_1..relu4_1 of MSE(mean) + MSE(std) between g(t)'s and the style's features
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from model.adain import mean_std


def content_loss(output_feat: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(output_feat.float(), target.float())


def style_losses(output_feats: list[torch.Tensor], style_feats: list[torch.Tensor]) -> list[torch.Tensor]:
    """One term per layer (relu1_1, relu2_1, relu3_1, relu4_1): matching channel means and stds."""
    terms = []
    for o, s in zip(output_feats, style_feats):
        (om, osd), (sm, ssd) = mean_std(o), mean_std(s)
        terms.append(F.mse_loss(om, sm) + F.mse_loss(osd, ssd))
    return terms
