"""The validity gate's frozen teacher, prepared for inference once per training run.

A C³ step with K = 1 runs the teacher over 2B images; on a CPU that forward is about half a
standard step. Because the teacher never trains, two exact rewrites apply: each batch norm that
follows a convolution is folded into that convolution's weights (eval-mode statistics, via
``torch.fx``), and a 2-D convolutional teacher runs on channels-last memory. Together they cut the
demo teachers' forward by ~20 % on this CPU (docs/benchmarks.md). Both change the order of float
operations, not the function: the rewritten network is used only when its logits on the first
batch it sees agree with the plain network's within ``RTOL``/``ATOL``; a network that cannot be
traced or does not agree keeps its plain forward.
"""

from __future__ import annotations

import copy
import dataclasses

import torch
from torch import Tensor, nn

from c3_core.model import ModelBundle

RTOL = 1e-4
ATOL = 1e-4  # logits; the rewrites measured ~1e-5 on the demo teachers


def fold_batch_norms(network: nn.Module) -> nn.Module | None:
    """An eval-mode copy of ``network`` with every conv → batch-norm pair folded, or None.

    None when the network cannot be traced symbolically (data-dependent control flow) or holds
    no such pair (nothing to gain).
    """
    from torch.fx.experimental.optimization import fuse

    pairs = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
    if not any(isinstance(m, pairs) for m in network.modules()) or not any(
        isinstance(m, nn.modules.batchnorm._BatchNorm) for m in network.modules()
    ):
        return None
    try:
        return fuse(copy.deepcopy(network).eval(), inplace=True)
    except Exception:  # noqa: BLE001 - any tracing failure means: keep the plain network
        return None


def _is_2d_convnet(network: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in network.modules()) and not any(
        isinstance(m, nn.Conv3d) for m in network.modules()
    )


class CheckedInferenceNetwork(nn.Module):
    """``fast`` in place of ``plain`` once it agreed with it on a batch; ``plain`` otherwise.

    The check runs on the first call (both forwards); from then on one forward per call. The
    output is always the same network's, so a resumed run gates as an uninterrupted one does.
    """

    def __init__(self, plain: nn.Module, fast: nn.Module, channels_last: bool) -> None:
        super().__init__()
        self.plain = plain
        self.fast = fast
        self.channels_last = channels_last
        self.agrees: bool | None = None  # None until checked

    def _fast(self, x: Tensor) -> Tensor:
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.fast(x).contiguous()

    def forward(self, x: Tensor) -> Tensor:
        if self.agrees is None:
            reference = self.plain(x)
            try:
                out = self._fast(x)
            except Exception:  # noqa: BLE001 - e.g. a .view() that needs contiguous memory
                self.agrees = False
                return reference
            self.agrees = out.shape == reference.shape and bool(
                torch.allclose(out.float(), reference.float(), rtol=RTOL, atol=ATOL)
            )
            return out if self.agrees else reference
        return self._fast(x) if self.agrees else self.plain(x)


def inference_teacher(teacher: ModelBundle) -> ModelBundle:
    """``teacher`` with its network prepared for frozen inference (see the module docstring).

    The network must already be on its device, in eval mode, without gradients. Returns
    ``teacher`` itself when no rewrite applies.
    """
    plain = teacher.network
    folded = fold_batch_norms(plain)
    channels_last = _is_2d_convnet(plain)
    if folded is None and not channels_last:
        return teacher
    fast = folded if folded is not None else copy.deepcopy(plain)
    if channels_last:
        fast = fast.to(memory_format=torch.channels_last)
    for p in fast.parameters():
        p.requires_grad_(False)
    return dataclasses.replace(teacher, network=CheckedInferenceNetwork(plain, fast.eval(), channels_last))
