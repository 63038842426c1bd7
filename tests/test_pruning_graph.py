"""Dependency groups found from the traced model graph."""

from __future__ import annotations

import networkx as nx
import pytest
import torch
from torch import nn

from optprune.errors import InvalidParameterError, UnsupportedLayerError
from optprune.pruning import Member, MultiHeadSelfAttention, dependency_groups


def by_name(groups):
    return {g.name: g for g in groups}


def mlp() -> nn.Sequential:
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.ReLU(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))


class Residual(nn.Module):
    """inp -> [a -> relu -> b] + skip -> out; the skip ties inp's and b's outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(5, 6)
        self.a = nn.Linear(6, 4)
        self.b = nn.Linear(4, 6)
        self.out = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.inp(x))
        h = h + self.b(torch.relu(self.a(h)))
        return self.out(torch.relu(h))


class InputResidual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(5, 4)
        self.b = nn.Linear(4, 5)
        self.out = nn.Linear(5, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(x + self.b(torch.relu(self.a(x))))


class TwoBranchCat(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.left = nn.Linear(4, 3)
        self.right = nn.Linear(4, 5)
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([torch.relu(self.left(x)), torch.relu(self.right(x))], dim=1))


class TinyTransformer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Linear(3, 8)
        self.att = MultiHeadSelfAttention(8, num_heads=4)
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.emb(x)
        h = h + self.att(h)
        return self.head(torch.relu(h).mean(dim=1))


def cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(6 * 2 * 2, 7), nn.ReLU(), nn.Linear(7, 3),
    )


def test_mlp_groups_and_graph() -> None:
    groups, graph = dependency_groups(mlp(), (1, 3, 4))
    g = by_name(groups)
    assert [x.name for x in groups if x.prunable] == ["1", "3"]
    assert g["1"].width == 6 and g["3"].width == 5
    assert set(g["1"].members) == {Member("1", "out"), Member("3", "in")}
    assert not g["5"].prunable and "output" in g["5"].reason
    assert not g["input:input_1"].prunable and "input" in g["input:input_1"].reason
    assert isinstance(graph, nx.DiGraph)
    assert graph.graph["input_shape"] == [1, 3, 4]
    assert graph.edges["2", "3"]["groups"] == ["1"]  # relu output feeds Linear 3 with group "1"
    assert nx.is_directed_acyclic_graph(graph)
    assert set(graph.graph["groups"]) == set(g)


def test_residual_addition_ties_widths_into_one_group() -> None:
    groups, graph = dependency_groups(Residual())
    g = by_name(groups)
    tied = g["inp"]
    assert tied.prunable and tied.width == 6
    assert {(m.module, m.role) for m in tied.members} == {("inp", "out"), ("b", "out"), ("a", "in"), ("out", "in")}
    assert g["a"].prunable and g["a"].width == 4
    assert "b" not in g  # b's output joined inp's group
    assert graph.edges["add", "relu_2"]["groups"] == ["inp"]


def test_residual_on_the_input_cannot_be_pruned() -> None:
    g = by_name(dependency_groups(InputResidual())[0])
    frozen = [x for x in g.values() if ("b", "out") in {(m.module, m.role) for m in x.members}][0]
    assert not frozen.prunable and "input" in frozen.reason
    assert g["a"].prunable


def test_concatenation_offsets_consumer_columns() -> None:
    g = by_name(dependency_groups(TwoBranchCat())[0])
    assert Member("head", "in", 0, 1) in g["left"].members
    assert Member("head", "in", 3, 1) in g["right"].members


def test_conv_channels_with_batchnorm_and_flatten() -> None:
    g = by_name(dependency_groups(cnn(), (1, 8, 8))[0])
    assert g["0"].kind == "channels" and g["0"].prunable
    assert Member("1", "channel") in g["0"].members  # BatchNorm follows its conv
    # the second conv's 6 channels reach the Linear through MaxPool + Flatten: 2*2 columns each
    assert Member("7", "in", 0, 4) in g["3"].members
    assert g["7"].kind == "neurons"


def test_attention_heads_group() -> None:
    g = by_name(dependency_groups(TinyTransformer(), (5, 3))[0])
    heads = g["att.heads"]
    assert heads.kind == "heads" and heads.width == 4 and heads.prunable
    assert Member("att.q_proj", "out", 0, 2) in heads.members
    assert Member("att.out_proj", "in", 0, 2) in heads.members
    # the residual stream ties the embedding, the attention output and the head's input
    emb = g["emb"]
    assert {("att.out_proj", "out"), ("att.q_proj", "in"), ("head", "in")} <= {(m.module, m.role) for m in emb.members}


def test_channel_mixing_layers_freeze_groups() -> None:
    model = nn.Sequential(nn.Linear(4, 6), nn.LayerNorm(6), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 2))
    g = by_name(dependency_groups(model)[0])
    assert not g["0"].prunable and "LayerNorm" in g["0"].reason
    assert g["2"].prunable


def test_unsupported_layer_is_named() -> None:
    model = nn.Sequential(nn.Linear(4, 6), nn.Hardswish(), nn.Linear(6, 2))
    with pytest.raises(UnsupportedLayerError, match="'1' of type 'Hardswish'"):
        dependency_groups(model)


def test_untraceable_model_is_reported() -> None:
    class Dynamic(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            return self.fc(x) if x.sum() > 0 else x

    with pytest.raises(UnsupportedLayerError, match="torch.fx cannot trace"):
        dependency_groups(Dynamic())


def test_input_shape_needed_for_convolutions() -> None:
    with pytest.raises(InvalidParameterError, match="input_shape is required"):
        dependency_groups(cnn())
    with pytest.raises(InvalidParameterError, match=r"input_shape \(1, 2, 2\) does not fit"):
        dependency_groups(cnn(), (1, 2, 2))


def test_tracing_leaves_batchnorm_statistics_untouched() -> None:
    model = cnn().train()
    before = model[1].running_mean.clone()
    dependency_groups(model, (1, 8, 8))
    torch.testing.assert_close(model[1].running_mean, before, rtol=0, atol=0)
    assert model.training
