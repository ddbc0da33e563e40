"""The full model: size, shapes, torchvision parity, symmetry, gradients, determinism."""
import pytest
import torch
import torch.nn.functional as F

from vit_lib.config import ViTConfig
from vit_lib.machinery.torchvision_compat import load_from_torchvision, matching_config, torchvision_vit
from vit_lib.model import (
    VisionTransformer,
    count_parameters,
    parameter_table,
    sincos_2d_position_embedding,
)


def test_seed_model_has_14410_parameters():
    model = VisionTransformer(ViTConfig())
    assert count_parameters(model) == 14_410
    table = parameter_table(model)
    assert sum(table.values()) == 14_410
    assert table["patch_embed"] == 800 and table["pos_embed"] == 272 and table["head"] == 170
    assert table["blocks.0.attn"] + table["blocks.0.mlp"] + table["blocks.0.norms"] == 3_280


@pytest.mark.parametrize("config", [
    ViTConfig(),
    ViTConfig(image_size=32, in_channels=3, patch_size=8, dim=32, depth=3, heads=4, mlp_dim=64),
], ids=["1ch-28px", "3ch-32px"])
def test_same_logits_as_torchvision(config):
    config = matching_config(config)
    tv = torchvision_vit(config).eval()
    # torchvision zero-initialises the head and class token: the copy must not be trivial
    assert tv.heads.head.weight.abs().sum() > 0 and tv.class_token.abs().sum() > 0
    ours = load_from_torchvision(VisionTransformer(config), tv).eval()
    x = torch.randn(8, config.in_channels, config.image_size, config.image_size)
    with torch.no_grad():
        expected, got = tv(x), ours(x)
    assert expected.abs().max() > 0.1
    assert (expected - got).abs().max().item() <= 1e-5


def test_default_eps_differs_from_torchvision():
    """With PyTorch's default LayerNorm eps the models differ measurably: eps matters."""
    config = ViTConfig()
    tv = torchvision_vit(matching_config(config)).eval()
    ours = load_from_torchvision(VisionTransformer(config), tv).eval()
    x = torch.randn(8, 1, 28, 28)
    with torch.no_grad():
        assert (tv(x) - ours(x)).abs().max() > 1e-7


def test_forward_shapes_and_attention_maps():
    model = VisionTransformer(ViTConfig()).eval()
    logits, maps = model(torch.randn(2, 1, 28, 28), return_attention=True)
    assert logits.shape == (2, 10)
    assert len(maps) == 4 and all(m.shape == (2, 4, 17, 17) for m in maps)
    torch.testing.assert_close(maps[0].sum(-1), torch.ones(2, 4, 17))
    mean_model = VisionTransformer(ViTConfig(pool="mean", pos_embed="sincos2d")).eval()
    logits, maps = mean_model(torch.randn(2, 1, 28, 28), return_attention=True)
    assert logits.shape == (2, 10) and maps[0].shape == (2, 4, 16, 16)


def test_wrong_input_shape_is_explained():
    model = VisionTransformer(ViTConfig())
    with pytest.raises(ValueError,
                       match=r"expected images of shape \[batch, 1, 28, 28\], got \[1, 28, 28\]"):
        model(torch.randn(1, 28, 28))


def test_sincos_embedding_is_fixed_and_distinct_per_position():
    table = sincos_2d_position_embedding(4, 16)
    assert table.shape == (16, 16)
    assert torch.cdist(table, table).add(torch.eye(16)).min() > 0.1     # every position distinct
    model = VisionTransformer(ViTConfig(pos_embed="sincos2d"))
    assert "pos_embed" not in dict(model.named_parameters())
    assert count_parameters(model) == 14_410 - 272


def _patch_permutation(images: torch.Tensor, perm: torch.Tensor, p: int) -> torch.Tensor:
    b, c, h, w = images.shape
    g = h // p
    x = images.reshape(b, c, g, p, g, p).permute(0, 2, 4, 1, 3, 5).reshape(b, g * g, c, p, p)
    x = x[:, perm].reshape(b, g, g, c, p, p).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, c, h, w)


def test_without_position_embeddings_the_encoder_is_permutation_equivariant():
    model = VisionTransformer(ViTConfig()).eval()
    with torch.no_grad():
        model.pos_embed.zero_()
    x = torch.randn(3, 1, 28, 28)
    perm = torch.randperm(16)
    shuffled = _patch_permutation(x, perm, 7)
    with torch.no_grad():
        tokens, tokens_shuffled = model.forward_features(x), model.forward_features(shuffled)
        torch.testing.assert_close(tokens_shuffled[:, 1:], tokens[:, 1:][:, perm], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(model(shuffled), model(x), atol=1e-5, rtol=1e-4)
        model.pos_embed.normal_()   # with positions, the same shuffle changes the prediction
        assert (model(shuffled) - model(x)).abs().max() > 1e-3


def test_every_parameter_receives_a_gradient():
    for config in [ViTConfig(), ViTConfig(pool="mean", drop_path=0.1, dropout=0.1)]:
        model = VisionTransformer(config)
        F.cross_entropy(model(torch.randn(4, 1, 28, 28)), torch.arange(4)).backward()
        missing = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
        assert not missing, f"no gradient for {missing}"


def _train_a_few_steps(seed: int) -> dict:
    torch.manual_seed(seed)
    model = VisionTransformer(ViTConfig(dropout=0.1, drop_path=0.1))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(5):
        x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model.state_dict()


def test_same_seed_gives_bit_identical_weights():
    a, b, c = _train_a_few_steps(1), _train_a_few_steps(1), _train_a_few_steps(2)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
