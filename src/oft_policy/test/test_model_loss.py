"""chunk_regression_loss: L1 / Huber over chunks with padded timesteps excluded."""

import pytest
import torch

from oft_policy.model.loss import chunk_regression_loss


def test_l1_and_huber_values():
    pred = torch.tensor([[[0.0, 2.0], [1.0, -1.0]]])
    target = torch.zeros_like(pred)
    assert chunk_regression_loss(pred, target, kind="l1").item() == pytest.approx(1.0)
    # Huber(delta=1): 0.5*x^2 inside, |x|-0.5 outside -> (0 + 1.5 + 0.5 + 0.5) / 4
    assert chunk_regression_loss(pred, target, kind="huber").item() == pytest.approx(0.625)
    # delta 3 keeps everything quadratic: 0.5 * (0 + 4 + 1 + 1) / 4
    assert chunk_regression_loss(pred, target, kind="huber", huber_delta=3.0).item() == pytest.approx(0.75)


def test_padded_timesteps_do_not_count():
    pred = torch.zeros(2, 3, 4)
    target = torch.ones(2, 3, 4)
    pad = torch.tensor([[False, False, True], [False, True, True]])
    base = chunk_regression_loss(pred, target, pad)
    pred_changed = pred.clone()
    pred_changed[pad] = 100.0  # garbage past the episode end
    assert chunk_regression_loss(pred_changed, target, pad).item() == pytest.approx(base.item()) == pytest.approx(1.0)
    pred_changed[0, 0] = 3.0  # a valid step does count: error 2 on 4 of 12 valid values
    assert chunk_regression_loss(pred_changed, target, pad).item() == pytest.approx((4 * 2 + 8 * 1) / 12)
    assert chunk_regression_loss(pred, target, torch.ones(2, 3, dtype=torch.bool)).item() == 0.0


def test_bad_arguments():
    x = torch.zeros(1, 2, 3)
    with pytest.raises(ValueError, match="kind"):
        chunk_regression_loss(x, x, kind="l2")
    with pytest.raises(ValueError, match="pad_mask"):
        chunk_regression_loss(x, x, torch.zeros(1, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="B, chunk, D"):
        chunk_regression_loss(x, torch.zeros(1, 2, 4))
