"""The seed tutorial's pipeline, re-implemented faithfully as the benchmarks' baseline.

What the seed does (see shared/REFERENCE.md): torchvision DataLoader over MNIST with ToTensor()
only (no normalisation, shuffled test loader too, num_workers 0), batch 64; a 14,410-parameter
ViT built on nn.MultiheadAttention whose classes read module-level constants; Adam at 1e-3;
a plain per-batch loop that reads loss.item() and counts correct predictions every step.
"""
from __future__ import annotations

import time

import torch
import torch.nn as nn
import torchvision
from torch.utils.data import DataLoader

from vit_lib.data import resolve_data_dir

# The seed's hyperparameters, as globals (the seed's classes read them this way).
BATCH_SIZE = 64
IMAGE_SIZE = 28
PATCH_SIZE = 7
CHANNELS = 1
NUM_HEADS = 4
EMBED_DIM = 16
NUM_BLOCKS = 4
MLP_NODES = 64
NUM_CLASSES = 10
LEARNING_RATE = 1e-3
NUM_PATCHES = (IMAGE_SIZE // PATCH_SIZE) ** 2


class SeedPatchEmbedding(nn.Module):
    def __init__(self):
        super().__init__()
        self.patch_embed = nn.Conv2d(CHANNELS, EMBED_DIM, kernel_size=PATCH_SIZE, stride=PATCH_SIZE)

    def forward(self, x):
        return self.patch_embed(x).flatten(2).transpose(1, 2)


class SeedEncoderBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(EMBED_DIM)
        self.multihead_attention = nn.MultiheadAttention(EMBED_DIM, NUM_HEADS, batch_first=True)
        self.layer_norm2 = nn.LayerNorm(EMBED_DIM)
        self.mlp = nn.Sequential(nn.Linear(EMBED_DIM, MLP_NODES), nn.GELU(),
                                 nn.Linear(MLP_NODES, EMBED_DIM))

    def forward(self, x):
        residual1 = x
        x = self.layer_norm1(x)
        x = self.multihead_attention(x, x, x)[0]
        x = x + residual1
        residual2 = x
        x = self.layer_norm2(x)
        x = self.mlp(x)
        return x + residual2


class SeedMLPHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.layernorm = nn.LayerNorm(EMBED_DIM)
        self.mlphead = nn.Linear(EMBED_DIM, NUM_CLASSES)

    def forward(self, x):
        return self.mlphead(self.layernorm(x))


class SeedViT(nn.Module):
    def __init__(self):
        super().__init__()
        self.patch_embedding = SeedPatchEmbedding()
        self.cls_token = nn.Parameter(torch.randn(1, 1, EMBED_DIM))
        self.position_embedding = nn.Parameter(torch.randn(1, NUM_PATCHES + 1, EMBED_DIM))
        self.transformer_blocks = nn.Sequential(*[SeedEncoderBlock() for _ in range(NUM_BLOCKS)])
        self.mlp_head = SeedMLPHead()

    def forward(self, x):
        x = self.patch_embedding(x)
        x = torch.cat((self.cls_token.expand(x.size(0), -1, -1), x), dim=1)
        x = x + self.position_embedding
        x = self.transformer_blocks(x)
        return self.mlp_head(x[:, 0])


def seed_loaders(data_dir=None, dataset: str = "mnist") -> tuple[DataLoader, DataLoader]:
    """The seed's loaders: ToTensor() only, batch 64, both shuffled."""
    cls = {"mnist": torchvision.datasets.MNIST,
           "fashion-mnist": torchvision.datasets.FashionMNIST}[dataset]
    transform = torchvision.transforms.ToTensor()
    root = str(resolve_data_dir(data_dir))
    train = cls(root=root, train=True, download=False, transform=transform)
    test = cls(root=root, train=False, download=False, transform=transform)
    return (DataLoader(train, batch_size=BATCH_SIZE, shuffle=True),
            DataLoader(test, batch_size=BATCH_SIZE, shuffle=True))


def seed_train_epoch(model: nn.Module, loader, optimizer, criterion, device,
                     max_batches: int | None = None) -> tuple[float, float, int, float]:
    """One epoch of the seed's loop -> (mean loss, accuracy %, images seen, seconds)."""
    model.train()
    total_loss, correct, total, batches = 0.0, 0, 0, 0
    start = time.perf_counter()
    for images, labels in loader:
        if max_batches is not None and batches >= max_batches:
            break
        batches += 1
        images, labels = images.to(device), labels.to(device)
        optimizer.zero_grad()
        outputs = model(images)
        loss = criterion(outputs, labels)
        loss.backward()
        optimizer.step()
        total_loss += loss.item()
        correct += (outputs.argmax(dim=1) == labels).sum().item()
        total += labels.size(0)
    seconds = time.perf_counter() - start
    return total_loss / max(batches, 1), 100.0 * correct / max(total, 1), total, seconds


@torch.no_grad()
def seed_evaluate(model: nn.Module, loader, device) -> float:
    """The seed's validation pass -> accuracy %."""
    model.eval()
    correct, total = 0, 0
    for images, labels in loader:
        images, labels = images.to(device), labels.to(device)
        correct += (model(images).argmax(dim=1) == labels).sum().item()
        total += labels.size(0)
    return 100.0 * correct / total


def seed_setup(device: str = "cpu"):
    """(model, optimizer, criterion) exactly as the seed builds them."""
    model = SeedViT().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    return model, optimizer, nn.CrossEntropyLoss()
