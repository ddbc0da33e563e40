"""Patches, attention and blocks: each piece proven against a second way of computing it."""
import torch
import torch.nn.functional as F
from torch import nn

from vit_lib.attention import MultiHeadSelfAttention, scaled_dot_product_attention
from vit_lib.block import Block, DropPath
from vit_lib.patches import PatchEmbedding, UnfoldPatchEmbedding, image_to_patches


def test_image_to_patches_order_is_row_major():
    img = torch.arange(16.0).reshape(1, 1, 4, 4)
    patches = image_to_patches(img, 2)
    assert patches.shape == (1, 4, 4)
    assert patches[0, 0].tolist() == [0, 1, 4, 5]       # top-left patch
    assert patches[0, 1].tolist() == [2, 3, 6, 7]       # top-right
    assert patches[0, 2].tolist() == [8, 9, 12, 13]     # bottom-left


def test_conv_patch_embedding_equals_unfold_plus_linear():
    for channels, size, patch in [(1, 28, 7), (3, 32, 8)]:
        conv = PatchEmbedding(channels, patch, 16)
        linear = UnfoldPatchEmbedding(channels, patch, 16).from_conv(conv)
        x = torch.randn(4, channels, size, size)
        assert conv(x).shape == (4, (size // patch) ** 2, 16)
        torch.testing.assert_close(conv(x), linear(x), atol=1e-5, rtol=1e-5)


def test_hand_attention_equals_pytorch_sdpa_and_rows_sum_to_one():
    q, k, v = torch.randn(3, 2, 4, 17, 8).unbind(0)
    out, weights = scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v), atol=1e-6, rtol=1e-5)
    assert weights.shape == (2, 4, 17, 17)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4, 17))


def test_multi_head_attention_matches_nn_multiheadattention():
    ours = MultiHeadSelfAttention(16, 4)
    ref = nn.MultiheadAttention(16, 4, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(ours.qkv.weight.data.normal_())
        ref.in_proj_bias.copy_(ours.qkv.bias.data.normal_())
        ref.out_proj.weight.copy_(ours.proj.weight)
        ref.out_proj.bias.copy_(ours.proj.bias.data.normal_())
    x = torch.randn(2, 17, 16)
    out, weights = ours(x, return_attention=True)
    ref_out, ref_weights = ref(x, x, x, need_weights=True, average_attn_weights=False)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(weights, ref_weights, atol=1e-6, rtol=1e-5)
    assert weights.shape == (2, 4, 17, 17)


def test_fast_sdpa_path_gives_the_same_result():
    attn = MultiHeadSelfAttention(16, 4).eval()
    x = torch.randn(3, 17, 16)
    attn.use_sdpa = False
    slow = attn(x)
    attn.use_sdpa = True
    torch.testing.assert_close(attn(x), slow, atol=1e-6, rtol=1e-5)


def test_block_is_pre_norm_residual():
    block = Block(16, 4, 64).eval()
    x = torch.randn(2, 17, 16)
    h = x + block.attn(block.norm1(x))
    expected = h + block.mlp(block.norm2(h))
    torch.testing.assert_close(block(x), expected)
    out, weights = block(x, return_attention=True)
    assert out.shape == x.shape and weights.shape == (2, 4, 17, 17)


def test_drop_path_drops_whole_samples_and_is_identity_in_eval():
    dp = DropPath(0.5)
    x = torch.ones(1000, 5, 3)
    y = dp(x)
    per_sample = y.reshape(1000, -1)
    assert set(per_sample.unique().tolist()) <= {0.0, 2.0}
    assert (per_sample.min(1).values == per_sample.max(1).values).all()   # all or nothing per sample
    assert 0.4 < (per_sample[:, 0] == 0).float().mean() < 0.6
    dp.eval()
    assert torch.equal(dp(x), x)
