"""The CUDA-graph training step (vit_lib.machinery.cuda_graphs), on the CPU: its static-buffer
bookkeeping, run without recording a graph, trains exactly as the eager epoch; NaN losses are
caught and named; the option is refused where it cannot work; checkpoints stay those of an eager
run. The capture itself is tested on a GPU (tests/test_gpu.py)."""
import pytest
import torch

from vit_lib.cnn import CNNConfig
from vit_lib.config import ViTConfig
from vit_lib.data import TensorLoader
from vit_lib.engine import TrainingDivergedError, build_optimizer, build_scheduler, fit, train_one_epoch
from vit_lib.machinery import cuda_graphs as graphs
from vit_lib.machinery.cuda_graphs import (
    CudaGraphError,
    GraphedTrainStep,
    check_cuda_graph,
    graph_ready,
    plain_optimizer_state,
)
from vit_lib.machinery.families import build_model
from vit_lib.machinery.runtime import seed_everything
from vit_lib.model import VisionTransformer
from vit_lib.presets import Recipe

TINY = ViTConfig(dim=8, depth=2, heads=2, mlp_dim=16, dropout=0.1, drop_path=0.1)
RECIPE = Recipe(optimizer="adamw", lr=3e-3, weight_decay=0.05, batch_size=16, epochs=2,
                schedule="cosine", warmup=0.1, grad_clip=1.0, label_smoothing=0.1)


def _loader(n: int = 100) -> TensorLoader:
    """100 images in batches of 16: 6 full batches and a last one of 4."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=g)
    labels = images.float().mean((1, 2, 3)).gt(127.5).long()
    return TensorLoader(images, labels, 16, shuffle=True, seed=0, mean=(0.5,), std=(0.3,))


def _train(graphed: bool, epochs: int = 2, config=TINY):
    seed_everything(0)
    model = build_model(config)
    loader = _loader()
    optimizer = build_optimizer(model, RECIPE)
    scheduler = build_scheduler(optimizer, RECIPE, epochs * len(loader))
    stats = []
    if graphed:
        graph_ready(optimizer)
        step = GraphedTrainStep(model, optimizer, RECIPE.batch_size, grad_clip=RECIPE.grad_clip,
                                label_smoothing=RECIPE.label_smoothing, capture=False)
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        if graphed:
            stats.append(step.run_epoch(loader, scheduler))
        else:
            stats.append(train_one_epoch(model, loader, optimizer, scheduler,
                                         label_smoothing=RECIPE.label_smoothing,
                                         grad_clip=RECIPE.grad_clip))
    return model, optimizer, stats


def test_static_buffer_step_trains_exactly_as_the_eager_epoch():
    # warm-up steps, the "recording" step, replays and the eager last batch, over two epochs
    assert graphs.WARMUP_STEPS + 1 < 6
    eager, eager_opt, eager_stats = _train(graphed=False)
    static, static_opt, static_stats = _train(graphed=True)
    for a, b in zip(eager_stats, static_stats, strict=True):
        assert a["seen"] == b["seen"] == 100
        assert a["accuracy"] == b["accuracy"]
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6)
    for (name, p), q in zip(eager.named_parameters(), static.parameters(), strict=True):
        if name.endswith("attn.qkv.bias"):
            # the key bias cancels in the softmax: its gradient is rounding noise, which Adam
            # scales up to lr-sized steps, so only the query and value biases are compared
            dim = TINY.dim
            p, q = torch.cat([p[:dim], p[2 * dim:]]), torch.cat([q[:dim], q[2 * dim:]])
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7, msg=name)
    # the schedule wrote the same lr into the tensor that the graph reads
    assert isinstance(static_opt.param_groups[0]["lr"], torch.Tensor)
    assert float(static_opt.param_groups[0]["lr"]) == pytest.approx(eager_opt.param_groups[0]["lr"])


def test_static_buffer_step_keeps_batchnorm_statistics_as_the_eager_epoch():
    config = CNNConfig(widths=(4, 8))            # lesson 07's CNN: BatchNorm running statistics
    eager, _, eager_stats = _train(graphed=False, config=config)
    static, _, static_stats = _train(graphed=True, config=config)
    assert [s["accuracy"] for s in eager_stats] == [s["accuracy"] for s in static_stats]
    for (name, a), b in zip(eager.state_dict().items(), static.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)   # running_mean/var too


def test_a_nan_loss_is_named_by_its_step():
    seed_everything(0)
    model = VisionTransformer(TINY)
    optimizer = build_optimizer(model, RECIPE)
    graph_ready(optimizer)
    step = GraphedTrainStep(model, optimizer, 16, capture=False)
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(16, 1, 28, 28, generator=g), torch.randint(0, 10, (16,), generator=g))
               for _ in range(7)]
    batches[4][0][0, 0, 0, 0] = float("nan")          # the 5th step's input
    with pytest.raises(TrainingDivergedError,
                       match=r"the loss became nan at step 5 of the epoch \(seen at step 7;"
                             r".*lower the learning rate"):
        step.run_epoch(batches)


@pytest.mark.parametrize("kwargs, fragment", [
    ({}, "CUDA graphs need a CUDA GPU, and this run trains on cpu; drop cuda_graph=True"),
    ({"compile": True}, "CUDA graphs and torch.compile cannot both wrap the step"),
    ({"parallel": True}, "not supported under torchrun"),
    ({"scaler": object()}, "need bf16 autocast"),
])
def test_refusals_say_why(kwargs, fragment):
    device = torch.device("cpu" if not kwargs else "cuda")   # past the device check
    with pytest.raises(CudaGraphError, match=fragment.replace("(", r"\(")):
        check_cuda_graph(device, **kwargs)


def test_fit_refuses_cuda_graphs_on_the_cpu_before_training():
    seed_everything(0)
    model = VisionTransformer(TINY)
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(CudaGraphError, match="need a CUDA GPU"):
        fit(model, _loader(), _loader(), RECIPE, progress=False, log=None, cuda_graph=True)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_checkpointed_optimizer_state_is_an_eager_ones():
    _, optimizer, _ = _train(graphed=True, epochs=1)
    state = plain_optimizer_state(optimizer.state_dict())
    assert all(isinstance(g["lr"], float) and g["capturable"] is False for g in state["param_groups"])
    assert isinstance(optimizer.param_groups[0]["lr"], torch.Tensor)     # the optimiser untouched
    seed_everything(0)
    eager = build_optimizer(VisionTransformer(TINY), RECIPE)
    eager.load_state_dict(state)
    assert isinstance(eager.param_groups[0]["lr"], float)
    assert eager.param_groups[0]["lr"] == pytest.approx(float(optimizer.param_groups[0]["lr"]))
