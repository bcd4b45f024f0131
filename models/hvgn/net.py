"""Hierarchical vessel graph network (HVGN) for artery/vein labelling of vessel pixels.

A residual U-Net (:class:`models.vessel.VesselUNet` with a feature head) turns the fundus
photo, and the registered FA aggregate when a case has one, into per-pixel features. The vessel
pixels of the approved mask become graph nodes carrying those features, joined within a local
window (:func:`pipeline.vessel_graph.pixel_graph`). A graph U-Net then passes messages with GCN
layers on several levels: nodes are pooled by a square grid of growing cells, the coarse
graphs carry context along the vessel tree far beyond the CNN's receptive field, and unpooling
brings it back to every pixel through skip connections. The network outputs one artery/vein
logit pair per vessel pixel.

Why grid pooling and not learned top-k pooling: the graph U-Net of Gao & Ji squares the
adjacency matrix after every top-k pooling step, which does not scale to the ~500k pixels of
an HRF mask on a CPU; pooling by a fixed spatial grid keeps every level a sparse, local graph
that is built once per image in numpy, and keeps the coarse graphs along the vessels.

References
----------
.. [1] Hu, Kang, et al., "A hierarchical vessel graph network for retinal artery/vein
   classification" (the HVGN design: CNN features on vessel pixels + graph U-Net).
.. [2] Gao, Ji, "Graph U-Nets", ICML 2019. arXiv:1905.05178
.. [3] Kipf, Welling, "Semi-supervised classification with graph convolutional networks",
   ICLR 2017. arXiv:1609.02907
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from angioflow.models.checkpoints import SavedWeights
from angioflow.models.vessel.net import VesselUNet, VesselUNetConfig
from angioflow.pipeline.vessel_graph import coarsen, pixel_graph
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.nn import functional as F  # noqa: N812
from torch_geometric.nn import GCNConv
from torch_geometric.utils import scatter

__all__ = ["HVGN", "HVGNConfig", "VesselGraphBatch", "graph_batch"]


class HVGNConfig(BaseModel):
    """Architecture of :class:`HVGN`.

    Attributes
    ----------
    fa_channels : int
        Extra input channels from the registered FA (0: fundus photo only; 2: FA aggregate
        mean and max in fundus pixels).
    base_channels, depth : int
        Width and depth of the CNN feature extractor.
    features : int
        CNN features per pixel (the graph's node features).
    hidden : int
        Node features inside the graph U-Net.
    window : int
        Odd side of the square window within which vessel pixels are joined.
    cells : tuple of int
        Grid cell of each pooling level, relative to the level below (2, 2, 2, 2: cells of
        2, 4, 8 and 16 working-scale pixels).
    fov_diameter_px : float
        Working scale: images are resized so that their field of view is this wide.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    fa_channels: int = Field(0, ge=0)
    base_channels: int = Field(16, ge=4)
    depth: int = Field(4, ge=1, le=6)
    features: int = Field(32, ge=4)
    hidden: int = Field(64, ge=4)
    window: int = Field(5, ge=3)
    cells: tuple[int, ...] = (2, 2, 2, 2)
    fov_diameter_px: float = Field(540.0, gt=0)

    @property
    def in_channels(self) -> int:
        return 3 + self.fa_channels


@dataclass
class VesselGraphBatch:
    """Vessel graphs of a batch of images, with their pooling hierarchy (torch tensors).

    Attributes
    ----------
    image_index : (N,) int64, the batch image each node belongs to.
    coords : (N, 2) int64, (row, column) of each node in its image.
    edge_index : list of (2, E_l) int64, the edges of level 0 (pixels) and each coarser level.
    cluster : list of (N_l,) int64, the coarse node of each node of level l, l = 0..L-1.
    """

    image_index: torch.Tensor
    coords: torch.Tensor
    edge_index: list[torch.Tensor]
    cluster: list[torch.Tensor]

    @property
    def num_nodes(self) -> int:
        return int(self.coords.shape[0])

    def to(self, device: torch.device) -> VesselGraphBatch:
        return VesselGraphBatch(
            self.image_index.to(device),
            self.coords.to(device),
            [e.to(device) for e in self.edge_index],
            [c.to(device) for c in self.cluster],
        )


def graph_batch(masks: list[np.ndarray], config: HVGNConfig) -> VesselGraphBatch:
    """Build the vessel graph hierarchy of each mask and join them into one batch.

    Parameters
    ----------
    masks : list of (H, W) bool ndarrays
        Vessel masks at the working scale (the images of one batch may differ in size).
    config : HVGNConfig

    Returns
    -------
    VesselGraphBatch
    """
    image_index, coords = [], []
    edges: list[list[np.ndarray]] = [[] for _ in range(len(config.cells) + 1)]
    clusters: list[list[np.ndarray]] = [[] for _ in config.cells]
    offsets = [0] * (len(config.cells) + 1)
    for b, mask in enumerate(masks):
        graph = pixel_graph(mask, window=config.window)
        image_index.append(np.full(graph.num_nodes, b, np.int64))
        coords.append(graph.coords.astype(np.int64))
        edges[0].append(graph.edge_index + offsets[0])
        level_coords, level_edges = graph.coords.astype(np.int64), graph.edge_index
        sizes = [graph.num_nodes]
        for level, cell in enumerate(config.cells):
            coarse = coarsen(level_coords, level_edges, cell)
            clusters[level].append(coarse.cluster + offsets[level + 1])
            edges[level + 1].append(coarse.edge_index + offsets[level + 1])
            # a coarse node sits at its cell, which every member shares: take any member's
            member = np.empty(coarse.num_nodes, np.int64)
            member[coarse.cluster] = np.arange(coarse.cluster.size)
            level_coords = level_coords[member] // cell
            level_edges = coarse.edge_index
            sizes.append(coarse.num_nodes)
        for level, size in enumerate(sizes):
            offsets[level] += size

    def cat(parts: list[np.ndarray], axis: int = 0) -> torch.Tensor:
        return torch.from_numpy(np.concatenate(parts, axis=axis))

    return VesselGraphBatch(
        image_index=cat(image_index),
        coords=cat(coords),
        edge_index=[cat(level, axis=1) for level in edges],
        cluster=[cat(level) for level in clusters],
    )


class HVGN(SavedWeights, nn.Module):
    """CNN features on vessel pixels, refined by a graph U-Net; artery/vein logits per pixel.

    Shapes:
        image: (B, 3 + fa_channels, H, W) float, H and W multiples of ``2**depth``
        graph: VesselGraphBatch with N nodes over the B images
        output: (N, 2) graph logits and (N, 2) CNN-only logits (class 0 artery, 1 vein)
    """

    config_class = HVGNConfig

    def __init__(self, config: HVGNConfig) -> None:
        super().__init__()
        self.config = config
        self.cnn = VesselUNet(
            VesselUNetConfig(
                in_channels=config.in_channels,
                base_channels=config.base_channels,
                depth=config.depth,
                fov_diameter_px=config.fov_diameter_px,
                out_channels=config.features,
            )
        )
        hidden = config.hidden
        self.pixel_head = nn.Linear(config.features, 2)
        self.encode = nn.ModuleList(
            [GCNConv(config.features, hidden)] + [GCNConv(hidden, hidden) for _ in config.cells]
        )
        self.decode = nn.ModuleList(GCNConv(2 * hidden, hidden) for _ in config.cells)
        self.head = nn.Linear(hidden + config.features, 2)

    @property
    def multiple(self) -> int:
        return self.cnn.multiple

    def forward(
        self, image: torch.Tensor, graph: VesselGraphBatch
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # 1. CNN features sampled at the vessel pixels
        feature_map = self.cnn(image)
        pixel = feature_map[graph.image_index, :, graph.coords[:, 0], graph.coords[:, 1]]
        pixel_logits = self.pixel_head(F.relu(pixel))
        # 2. graph U-Net: GCN on each level, pooling by grid cells on the way down ...
        h = F.relu(self.encode[0](pixel, graph.edge_index[0]))
        skips = [h]
        for level, conv in enumerate(self.encode[1:]):
            h = scatter(h, graph.cluster[level], dim=0, reduce="mean")
            h = F.relu(conv(h, graph.edge_index[level + 1]))
            skips.append(h)
        # 3. ... and unpooling with skip connections on the way up
        skips.pop()
        for level in reversed(range(len(self.decode))):
            h = torch.cat([h[graph.cluster[level]], skips.pop()], dim=1)
            h = F.relu(self.decode[level](h, graph.edge_index[level]))
        return self.head(torch.cat([h, pixel], dim=1)), pixel_logits
