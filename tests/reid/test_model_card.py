"""The model card states the recipe, the training command, rounded figures and how the backbone started."""

import sys

import pytest

from stadb_reid.config import config_to_dict, load_config
from stadb_reid.model.folder import ModelFolderConfig
from stadb_reid.model.folder.card import model_card, run_provenance


def card_of(run_config: dict, metrics: dict | None) -> str:
    config = ModelFolderConfig(
        num_classes=48, embedding_dim=1536, height=64, width=32, mean=(0.5,) * 3, std=(0.25,) * 3,
        model=dict(run_config["model"]), provenance=run_provenance(run_config, metrics),
    )  # fmt: skip
    return model_card(config)


def test_a_trained_runs_card(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["stadb-reid", "export", "--checkpoint", "run/checkpoint.pt"])
    run_config = config_to_dict(load_config(["demo_cpu"], dotlist=["model.backbone=resnet50.tv_in1k"]))
    metrics = {
        "rank1": 69.9999988079071, "mAP": 55.81234, "epochs": 24, "num_parameters": 31723456,
        "recipe": "paper", "command": "stadb-reid demo --set seed=1", "config": run_config,
    }  # fmt: skip
    card = card_of(run_config, metrics)
    for expected in (
        "Recipe: `paper`.",
        "Training command: `stadb-reid demo --set seed=1`",
        "Initialisation: from scratch: random initialisation, no pretrained weights.",
        "| rank-1 | 70.0 % |",
        "| mAP | 55.8 % |",
        "| parameters | 31,723,456 |",
        "on the test split of `synthetic`: every query against the gallery",
        "(Market-1501 protocol, single query); euclidean distance; flip-averaged features: no",
        "This folder written by: `stadb-reid export --checkpoint run/checkpoint.pt`",
    ):
        assert expected in card, expected
    assert "69.99" not in card


def test_pretrained_backbones_and_unrecorded_commands_are_said_so() -> None:
    run_config = config_to_dict(load_config(recipe="paper"))
    card = card_of(run_config, {"rank1": 50.0})
    assert "backbone pretrained on ImageNet (`resnet50.tv_in1k` weights through timm)" in card
    assert "Training command: not recorded" in card and "Recipe: not recorded" in card
