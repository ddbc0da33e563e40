import pytest

from vit_lib.config import ConfigError, ViTConfig
from vit_lib.presets import PRESETS, Recipe, get_preset


def test_seed_defaults_describe_the_seed_model():
    c = ViTConfig()
    assert (c.image_size, c.in_channels, c.patch_size, c.dim, c.depth, c.heads, c.mlp_dim,
            c.num_classes) == (28, 1, 7, 16, 4, 4, 64, 10)
    assert (c.grid_size, c.num_patches, c.num_tokens, c.head_dim) == (4, 16, 17, 4)
    assert ViTConfig(pool="mean").num_tokens == 16


@pytest.mark.parametrize("kwargs, message", [
    (dict(patch_size=6), "patch_size 6 does not divide image_size 28; try one of 2, 4, 7, 14"),
    (dict(dim=18, heads=4), "dim 18 is not divisible by heads 4; choose heads from 1, 2, 3, 6, 9, 18"),
    (dict(patch_size=32), "patch_size 32 is larger than image_size 28"),
    (dict(depth=0), "depth must be a positive whole number, got 0"),
    (dict(heads=2.5), "heads must be a positive whole number, got 2.5"),
    (dict(dropout=1.0), "dropout must be a probability in [0, 1), got 1.0"),
    (dict(pool="max"), "pool must be one of ('cls', 'mean'), got 'max'"),
    (dict(pos_embed="rope"), "pos_embed must be one of ('learned', 'sincos2d', 'none'), got 'rope'"),
    (dict(pos_embed="sincos2d", dim=18, heads=2), "needs dim divisible by 4, got dim 18"),
    (dict(num_classes=1), "num_classes must be at least 2"),
])
def test_bad_config_says_how_to_fix_it(kwargs, message):
    with pytest.raises(ConfigError) as err:
        ViTConfig(**kwargs)
    assert message in str(err.value)


def test_config_round_trips_through_a_dict():
    c = ViTConfig(dim=32, pool="mean", pos_embed="sincos2d")
    assert ViTConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ConfigError, match="unknown ViTConfig field"):
        ViTConfig.from_dict({"dimension": 3})


def test_presets_exist_and_seed_matches_the_tutorial():
    assert set(PRESETS) == {"seed", "seed-tuned", "seed-speedrun", "best", "cnn-tiny", "cnn", "best-distilled"}
    seed = PRESETS["seed"]
    assert seed.model == ViTConfig()
    r = seed.recipe
    assert (r.optimizer, r.lr, r.batch_size, r.epochs, r.schedule, r.normalize) == \
        ("adam", 1e-3, 64, 10, "constant", False)
    assert not r.augment.active and r.weight_decay == 0 and r.label_smoothing == 0
    assert PRESETS["seed-tuned"].model == ViTConfig()   # same architecture, better recipe


def test_seed_speedrun_trains_the_seeds_model_with_a_short_fast_recipe():
    import torch

    from vit_lib.data import TensorLoader
    from vit_lib.engine import fit
    from vit_lib.model import VisionTransformer, count_parameters

    speedrun = get_preset("seed-speedrun", "mnist")
    assert speedrun.model == PRESETS["seed"].model          # only the recipe differs from the seed's
    r = speedrun.recipe
    assert (r.optimizer, r.lr, r.beta2, r.batch_size, r.epochs, r.schedule, r.warmup, r.normalize) == \
        ("adamw", 3e-2, 0.99, 128, 2, "linear", 0.05, True)
    assert PRESETS["seed-tuned"].recipe.lr == 5e-3 and PRESETS["seed-tuned"].recipe.epochs == 10   # unchanged
    torch.manual_seed(0)
    model = VisionTransformer(speedrun.model)
    assert count_parameters(model) == 14_410
    images, labels = torch.randint(0, 256, (256, 1, 28, 28), dtype=torch.uint8), torch.randint(0, 10, (256,))
    loader = TensorLoader(images, labels, r.batch_size, shuffle=True, seed=0)
    before = [p.detach().clone() for p in model.parameters()]
    history = fit(model, loader, loader, r, progress=False, log=None)
    assert len(history) == 2 and all(h["train_loss"] == h["train_loss"] for h in history)   # finite
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_get_preset_adapts_to_dataset_and_rejects_unknown_names():
    p = get_preset("seed", "cifar10")
    assert (p.model.image_size, p.model.in_channels, p.model.patch_size) == (32, 3, 8)
    assert get_preset("seed", lr=3e-3).recipe.lr == 3e-3
    with pytest.raises(ConfigError, match="unknown preset 'tiny'; choose one of seed, seed-tuned, seed-speedrun, best"):
        get_preset("tiny")


@pytest.mark.parametrize("kwargs, message", [
    (dict(optimizer="sgd"), "optimizer must be one of"),
    (dict(lr=0), "lr must be positive"),
    (dict(warmup=1.5), "warmup is a fraction"),
    (dict(schedule="step"), "schedule must be one of"),
])
def test_bad_recipe(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        Recipe(**kwargs)
