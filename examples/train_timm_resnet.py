"""Train a timm ResNet with the STADB layers for a few steps on random data.

A smoke demo of the library: CBAM inside every residual block (timm's ``attn_layer``), a random choice
between SelfThresholdDrop and the identity on the last feature map, and cross-entropy plus the
soft-margin batch-hard triplet loss on P x K batches. The images are noisy copies of one random
prototype per identity, so the loss has something to learn.

Run: ``python examples/train_timm_resnet.py --steps 20``
"""

import argparse
import time

import timm
import torch
from torch import nn

from stadb_layers import CBAM, RandomBranchSelector, SelfThresholdDrop, SoftMarginBatchHardTriplet


class AttentiveDropResNet(nn.Module):
    """timm ResNet with CBAM blocks, a drop/identity branch selector and max pooling."""

    def __init__(self, backbone: str, num_classes: int, seed: int) -> None:
        super().__init__()
        self.backbone = timm.create_model(
            backbone, pretrained=False, num_classes=0, global_pool="", block_args=dict(attn_layer=CBAM)
        )
        self.branch = RandomBranchSelector(
            [SelfThresholdDrop(alpha=0.8), nn.Identity()], probs=[0.25, 0.75], eval_branch=1, seed=seed
        )
        self.classifier = nn.Linear(self.backbone.num_features, num_classes)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the max-pooled embedding and the identity logits."""
        features = self.branch(self.backbone(images)).amax(dim=(2, 3))
        return features, self.classifier(features)


def main() -> None:
    """Parse the arguments and run the training loop."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet18", help="any timm ResNet, e.g. resnet50")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--identities", type=int, default=8, help="P identities per batch")
    parser.add_argument("--instances", type=int, default=4, help="K images per identity")
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    model = AttentiveDropResNet(args.backbone, args.identities, args.seed)
    prototypes = torch.randn(args.identities, 3, args.height, args.width)
    labels = torch.arange(args.identities).repeat_interleave(args.instances)
    cross_entropy, triplet = nn.CrossEntropyLoss(), SoftMarginBatchHardTriplet()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4, weight_decay=5e-4)
    num_parameters = sum(p.numel() for p in model.parameters())
    print(f"{args.backbone} with CBAM + SelfThresholdDrop: {num_parameters:,} parameters")

    model.train()
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        images = prototypes[labels] + 0.5 * torch.randn(len(labels), 3, args.height, args.width)
        features, logits = model(images)
        loss_ce, loss_triplet = cross_entropy(logits, labels), triplet(features, labels)
        optimizer.zero_grad()
        (loss_ce + loss_triplet).backward()
        optimizer.step()
        branch = "drop" if model.branch.last_branch == 0 else "identity"
        print(
            f"step {step:3d}/{args.steps}  branch {branch:8s}  cross-entropy {loss_ce.item():.3f}  "
            f"triplet {loss_triplet.item():.3f}  ({time.perf_counter() - start:.1f} s)"
        )

    model.eval()
    with torch.no_grad():
        _, logits = model(prototypes[labels] + 0.5 * torch.randn(len(labels), 3, args.height, args.width))
    accuracy = (logits.argmax(dim=1) == labels).float().mean().item()
    print(f"eval accuracy on fresh noisy images: {100 * accuracy:.1f}% (chance {100 / args.identities:.1f}%)")


if __name__ == "__main__":
    main()
