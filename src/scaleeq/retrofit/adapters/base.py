"""The adapter contract and the building blocks every architecture family's adapter shares.

An :class:`Adapter` knows one family of fixed-scale SR networks: how to recognise it by
structure (:meth:`Adapter.matches`), how to turn a shallow clone of the network into a
scale-aware body (:meth:`Adapter.build`: insert :class:`~scaleeq.AFEBlock` layers in their
identity-at-init form at the family's group boundaries, drop the fixed-scale tail), how to run
that body with the scale as an argument (:meth:`Adapter.features`) and what the network does to
its output after the tail (:meth:`Adapter.output`, :attr:`Adapter.residual`).

**The cut point** is the LR feature map just before the fixed-scale tail: the input of the
module :meth:`Adapter.tail_module` names. :func:`check_cut` verifies at retrofit time that the
adapter's :meth:`~Adapter.features` reproduce that input of the network's own ``forward``
(captured by a hook, so the reference is the architecture's code, not the adapter's).

**Stride.** A body whose feature map is not on the input's pixel grid (a pixel-unshuffle front
end) declares :meth:`Adapter.stride`; the render plan then reads the map at that stride
(:meth:`~scaleeq.geometry.RenderPlan.at_stride`), so the output still follows the input image.

Adapters hold no tensors (the backbone does), so they add nothing to a state dict.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from ..._activation_checkpoint import maybe_checkpoint
from ...layers.afe import AFEBlock, AFETokenBlock
from ...ops.coords import ceil_div
from ...scale import ScaleCondition

__all__ = [
    "AFEThenLayer",
    "Adapter",
    "Interleaved",
    "check_cut",
    "interleave",
    "out_channels",
    "run_body",
]


def out_channels(module: nn.Module) -> int | None:
    """Output channels of ``module``: its own if a conv, else its last conv's (``None``: none)."""
    if isinstance(module, nn.Conv2d):
        return module.out_channels
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    return convs[-1].out_channels if convs else None


class Interleaved(nn.Module):
    """Runs ``blocks`` in order with an AFE block before every ``every``-th of the first
    ``n_blocks``; ``forward(x, scale)`` hands the scale to each AFE block.

    With ``checkpointing`` set (``"reentrant"`` / ``"non_reentrant"``), each AFE block and each
    block runs under activation checkpointing while gradients are enabled.
    """

    def __init__(
        self, blocks: nn.Sequential, afe: nn.ModuleList, every: int, n_blocks: int
    ) -> None:
        super().__init__()
        self.blocks = blocks
        self.afe = afe
        self.every = every
        self.n_blocks = n_blocks
        self.checkpointing: str | None = None

    def forward(self, x: torch.Tensor, scale: ScaleCondition) -> torch.Tensor:
        mode = self.checkpointing
        for i, block in enumerate(self.blocks):
            if i < self.n_blocks and i % self.every == 0:
                x = maybe_checkpoint(self.afe[i // self.every], x, scale, mode=mode)
            x = maybe_checkpoint(block, x, mode=mode)
        return x


class AFEThenLayer(nn.Module):
    """A token-based residual group (Swin/HAT/DAT/...) preceded by an AFE token block.

    ``forward(x, x_size, scale, *args)``: ``x`` ``(B, h*w, C)`` tokens; ``args`` are the
    group's own extra arguments (HAT's ``params``), passed on unchanged.
    """

    def __init__(self, afe: AFETokenBlock, layer: nn.Module) -> None:
        super().__init__()
        self.afe = afe
        self.layer = layer
        self.checkpointing: str | None = None

    def _run(self, x: torch.Tensor, x_size: tuple[int, int], scale: ScaleCondition, *args: Any):
        return self.layer(self.afe(x, x_size, scale), x_size, *args)

    def forward(
        self, x: torch.Tensor, x_size: tuple[int, int], scale: ScaleCondition, *args: Any
    ) -> torch.Tensor:
        return maybe_checkpoint(self._run, x, x_size, scale, *args, mode=self.checkpointing)


def interleave(
    body: nn.Sequential | nn.ModuleList, channels: int | None, every: int | None, n_blocks: int
) -> Interleaved:
    """:class:`Interleaved` over ``body``'s blocks: an AFE block (``channels`` wide) before
    every ``every``-th of the first ``n_blocks`` (default: every group when the blocks are
    groups of layers, else a quarter of the body, so 4 AFE blocks)."""
    if channels is None:
        raise ValueError("cannot infer the body's channels for the AFE blocks; pass afe='none'")
    if not isinstance(body, nn.Sequential):
        body = nn.Sequential(*body)
    grouped = any(
        isinstance(m, nn.Sequential | nn.ModuleList)
        for blk in body[:n_blocks]
        for m in blk.children()
    )
    if every is None:
        every = 1 if grouped else max(1, n_blocks // 4)
    count = ceil_div(n_blocks, every)
    afe = nn.ModuleList(AFEBlock(channels, identity_init=True) for _ in range(count))
    return Interleaved(body, afe, every, n_blocks)


def run_body(body: nn.Module, x: torch.Tensor, scale: ScaleCondition) -> torch.Tensor:
    """``body(x, scale)`` for an :class:`Interleaved` body, ``body(x)`` otherwise
    (``afe="none"``)."""
    return body(x, scale) if isinstance(body, Interleaved) else body(x)


def afe_layers(layers: nn.ModuleList, dim: int) -> nn.ModuleList:
    """Each token group of ``layers`` wrapped to run an identity-at-init AFE token block first."""
    return nn.ModuleList(AFEThenLayer(AFETokenBlock(dim, identity_init=True), g) for g in layers)


def run_layers(
    layers: nn.ModuleList, t: torch.Tensor, x_size: tuple[int, int], scale: ScaleCondition, *args
) -> torch.Tensor:
    """Run token groups in order, handing the scale to the AFE-wrapped ones."""
    for layer in layers:
        t = (
            layer(t, x_size, scale, *args)
            if isinstance(layer, AFEThenLayer)
            else layer(t, x_size, *args)
        )
    return t


class Adapter:
    """One family of fixed-scale SR networks that :func:`~scaleeq.retrofit` recognises.

    Subclasses set the class attributes and implement :meth:`matches`, :meth:`build`,
    :meth:`features` and :meth:`tail_module`; the rest has defaults.

    Attributes:
        name: the layout name stored in saved files (never change it: files are API).
        family: the architecture family in words (docs, messages).
        architectures: the spandrel architecture ids the adapter covers (docs, tests).
        residual: what the network adds to its output after the tail, carried to every scale
            by ``retrofit(skip="auto")``: ``"nearest"``, ``"bilinear"`` or ``"bicubic"``
            interpolation of the input (``None``: nothing).
        export_batch: ``1`` where the architecture's own code fixes the batch while tracing
            (window attention computing the batch from sizes), so that
            :func:`scaleeq.onnx.export_onnx` writes a one-sample graph at once; ``None``: the
            batch stays a dynamic input size.
    """

    name: ClassVar[str] = ""
    family: ClassVar[str] = ""
    architectures: ClassVar[tuple[str, ...]] = ()
    residual: ClassVar[str | None] = None
    export_batch: ClassVar[int | None] = None

    def __init__(self, pixel_range: float = 1.0, body: str | None = None) -> None:
        self.pixel_range = pixel_range
        self.body = body

    # -- recognition --------------------------------------------------------------------------
    @classmethod
    def matches(cls, model: nn.Module) -> bool:
        """Whether ``model`` has this family's structure (attributes and module kinds)."""
        raise NotImplementedError

    @classmethod
    def fits(cls, model: nn.Module) -> bool:
        """Whether the adapter can run on ``model`` when a saved file names it (by default
        :meth:`matches`; an adapter that a more specific one has since replaced for some
        networks still fits them)."""
        return cls.matches(model)

    # -- building -----------------------------------------------------------------------------
    def build(self, model: nn.Module, backbone: nn.Module, settings: dict[str, Any]) -> int | None:
        """Insert AFE blocks and drop the tail on ``backbone`` (a shallow clone of ``model``);
        return the feature channels (``None`` if unknown)."""
        raise NotImplementedError

    def tail_module(self, model: nn.Module) -> nn.Module | None:
        """The first module of ``model``'s fixed-scale tail: its input is the cut point
        (``None``: the adapter cannot name one, and :func:`check_cut` is skipped)."""
        return None

    def cut_reference(
        self, model: nn.Module, ref: torch.Tensor, size: tuple[int, int]
    ) -> torch.Tensor:
        """The LR features inside ``ref``, the input of :meth:`tail_module` when the network
        runs on an image of ``size``: by default its top-left ``ceil(h / s)`` x ``ceil(w / s)``
        (networks that pad to a multiple crop after the tail). Architectures whose tail input
        is not the map itself (a border all round, a functional nearest upsampling before the
        first tail module) say how to read it."""
        s = self.stride(model)
        return ref[:, :, : ceil_div(size[0], s), : ceil_div(size[1], s)]

    def reference_model(self, model: nn.Module) -> nn.Module:
        """The network whose own forward :func:`check_cut` runs for the reference (``model``;
        a multi-task network returns a shallow clone set to its super-resolution path)."""
        return model

    def probe_size(self, model: nn.Module) -> tuple[int, int]:
        """An input size the architecture accepts, for :func:`check_cut`."""
        return (16, 16)

    def model_input(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """What the original network's ``forward`` takes for the [0, 1] image ``x`` (EDSR-
        PyTorch models take ``[0, pixel_range]``)."""
        return x

    # -- running ------------------------------------------------------------------------------
    def features(
        self, backbone: nn.Module, lr: torch.Tensor, scale: ScaleCondition
    ) -> torch.Tensor:
        """The body's features of ``lr`` ``(B, C_in, h, w)`` in [0, 1], AFE layers at ``scale``
        (the call's parsed condition: ``scale.value`` is ``(N, 2)`` float64, ``N`` = 1 or
        ``B``). ``lr`` must not be modified in place."""
        raise NotImplementedError

    def stride(self, backbone: nn.Module) -> int:
        """The feature map's stride over the input (2 or 4 behind a pixel-unshuffle front)."""
        return 1

    def input_conv(self, backbone: nn.Module) -> nn.Conv2d | None:
        """The convolution that reads the LR image (its channels and dtype are the input's);
        ``None`` where the adapter does not know it."""
        return None

    def output_range(self, backbone: nn.Module) -> float:
        """The factor between the network's output units and [0, 1]."""
        return 1.0

    def output(self, backbone: nn.Module, out: torch.Tensor) -> torch.Tensor:
        """The network's output transform applied to the upsampler's output."""
        return out

    def prepare_export(self, backbone: nn.Module) -> None:
        """Make ``backbone`` (an eval-mode copy that :func:`scaleeq.onnx.export_onnx` owns)
        traceable without changing its outputs; by default nothing to do. For code that rewrites
        its own weights on every call (SPAN's re-parameterised convolutions)."""

    def export_trace_size(self, backbone: nn.Module) -> tuple[int, int] | None:
        """The smallest LR size :func:`scaleeq.onnx.export_onnx` traces at (a larger
        ``example_size`` is kept), or ``None``: for code whose graph keeps what the traced size
        implies, e.g. a window count that a trace inside one window fixes at 1."""
        return None

    def set_checkpointing(self, backbone: nn.Module, mode: str | None) -> int:
        """Turn activation checkpointing of the AFE-carrying segments on (``mode``) or off;
        return how many segments it applies to."""
        count = 0
        for m in backbone.modules():
            if isinstance(m, Interleaved | AFEThenLayer):
                m.checkpointing = mode
                count += 1
        return count


class _CutReached(Exception):
    """Raised by the hook of :func:`reference_features` to stop the forward at the cut."""

    def __init__(self, feat: torch.Tensor) -> None:
        super().__init__("cut point reached")
        self.feat = feat


def reference_features(tail: nn.Module, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The input of ``tail`` when ``model``'s own ``forward`` runs on ``x``: the original
    network's features at the cut point (the forward stops there)."""

    def hook(_module: nn.Module, args: tuple) -> None:
        raise _CutReached(args[0])

    handle = tail.register_forward_pre_hook(hook)
    try:
        model(x)
    except _CutReached as reached:
        return reached.feat
    finally:
        handle.remove()
    raise ValueError(f"the forward of {type(model).__name__} never reached its tail")


def check_cut(adapter: Adapter, model: nn.Module, backbone: nn.Module) -> None:
    """Check that ``adapter.features`` on ``backbone`` (AFE blocks at identity) reproduces
    the input of ``model``'s tail in ``model``'s own forward, on a random probe input.

    Raises:
        ValueError: they differ (an architecture variant the adapter does not know).
    """
    tail = adapter.tail_module(model)
    param = next(model.parameters(), None)
    if tail is None or param is None or param.device.type == "meta":
        return
    conv = adapter.input_conv(model)
    c = int(conv.in_channels) if conv is not None else 3
    h, w = adapter.probe_size(model)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(1, c, h, w, generator=gen).to(param)
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            runner = adapter.reference_model(model)
            ref = reference_features(tail, runner, adapter.model_input(model, x.clone()))
            expected = adapter.cut_reference(model, ref, (h, w))
            ones = ScaleCondition(torch.ones(1, 2, dtype=torch.float64))
            ours = adapter.features(backbone, x, ones)
    finally:
        model.train(training)
    if expected.shape != ours.shape or not torch.allclose(expected, ours, atol=1e-5, rtol=1e-4):
        diff = (
            f"max difference {(expected - ours).abs().max().item():.3g}"
            if expected.shape == ours.shape
            else f"shapes {tuple(expected.shape)} and {tuple(ours.shape)}"
        )
        raise ValueError(
            f"retrofit cannot reproduce the features of {type(model).__name__} at its cut point "
            f"(the input of its tail) with the {adapter.family} adapter ({diff}); retrofit it "
            "with explicit parts: retrofit(model, body=..., tail=...)"
        )
