"""Speed and memory of the dropout ops against their anchors, measured in the same run.

Forward + backward time (median of ``--runs`` runs after warm-up; entries are run round-robin,
so a noisy neighbour slows all of them alike) and the bytes autograd saves for backward
(counted with ``torch.autograd.graph.saved_tensors_hooks``), for:

- conv ``(128, 64, 32, 32)``: nn.Dropout(0.1), nn.Dropout2d(0.1), torchvision
  DropBlock2d(0.1, 7), timm DropBlock2d(0.1, 7) (if timm is installed), our DropBlock2d,
  and PatternDropout2d with 5 representative patterns;
- seq ``(32, 256, 512)``: nn.Dropout(0.1), PatternDropoutSeq (3 patterns), VariationalDropout.

Targets (checked at the end, MISS lines are printed honestly):
PatternDropout2d share_c <= 1.2x timm DropBlock2d; per-channel <= 0.6x nn.Dropout; both far
under torchvision's DropBlock2d; PatternDropoutSeq <= 1.0x nn.Dropout; saved bytes <= nn.Dropout's; PatternDropout2d <= 1.05x
the pre-fix op (the one whose output was a view, which in-place consumers could not modify:
it is kept below as ``_PreFixPattern`` so the two run in the same process, round-robin).

Usage: ``python benchmarks/bench_masks.py [--device cuda] [--quick] [--runs N] [--threads T]``.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
import torchvision
from torch import nn
from torchvision.ops import DropBlock2d as TvDropBlock2d

from adsearch.ops import DropBlock2d, PatternDropout2d, PatternDropoutSeq, VariationalDropout
from adsearch.ops import conv as conv_ops
from adsearch.patterns import ConvPattern, SeqPattern

CONV_PATTERNS = {
    "pattern plain": ConvPattern(size=3, stride=4),
    "pattern plain share_c": ConvPattern(size=5, stride=3, share_c=True),
    "pattern rot30 shear_x": ConvPattern(size=4, stride=4, rotate=30, shear_x=0.25),
    "pattern rot45 shear_y share_c": ConvPattern(size=3, stride=6, rotate=45, shear_y=0.5, share_c=True),
    "pattern repeat3 rot15": ConvPattern(size=3, stride=2, repeat=3, rotate=15, shear_x=0.1),
}
SEQ_PATTERNS = {
    "seq token share_t": SeqPattern(size=2, stride=8, mask="token"),
    "seq group per-span": SeqPattern(size=4, stride=4, mask="group", groups=4, share_t=False),
    "seq interleave": SeqPattern(size=2, stride=2, mask="interleave", groups=8),
}


def _prefix_windows(vals: torch.Tensor, oy: torch.Tensor, ox: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """The gather before the in-place fix: flat offsets, then ``.view(shape)`` (a view)."""
    h, w = shape[-2], shape[-1]
    return vals.unfold(0, h, 1).unfold(1, w, 1)[oy, ox].view(shape)


@contextlib.contextmanager
def _prefix_op() -> Iterator[None]:
    """Run PatternDropout2d as it was before the in-place fix, forward and backward (the
    anchor of the <= 1.05x target)."""
    current = conv_ops._windows
    conv_ops._windows = _prefix_windows  # type: ignore[assignment]
    try:
        yield
    finally:
        conv_ops._windows = current  # type: ignore[assignment]


@dataclass
class Entry:
    name: str
    group: str  # "conv" or "seq"
    module: nn.Module
    times: list[float] = field(default_factory=list)
    saved: int = 0
    prefix: bool = False  # run under _prefix_op()


def _entries(with_timm: bool) -> list[Entry]:
    out = [
        Entry("nn.Dropout(0.1)", "conv", nn.Dropout(0.1)),
        Entry("nn.Dropout2d(0.1)", "conv", nn.Dropout2d(0.1)),
        Entry("torchvision DropBlock2d(0.1, 7)", "conv", TvDropBlock2d(0.1, 7)),
    ]
    if with_timm:
        from timm.layers import DropBlock2d as TimmDropBlock2d

        out.append(Entry("timm DropBlock2d(0.1, 7)", "conv", TimmDropBlock2d(0.1, 7)))
    out.append(Entry("ours DropBlock2d(0.1, 7)", "conv", DropBlock2d(0.1, 7)))
    out.append(Entry("ours DropBlock2d(0.1, 7) share_c", "conv", DropBlock2d(0.1, 7, share_c=True)))
    out += [Entry(k, "conv", PatternDropout2d(p)) for k, p in CONV_PATTERNS.items()]
    out += [Entry(f"{k} (pre-fix op)", "conv", PatternDropout2d(p), prefix=True) for k, p in CONV_PATTERNS.items()]
    out.append(Entry("nn.Dropout(0.1) seq", "seq", nn.Dropout(0.1)))
    out += [Entry(k, "seq", PatternDropoutSeq(p)) for k, p in SEQ_PATTERNS.items()]
    out.append(Entry("VariationalDropout(0.1)", "seq", VariationalDropout(0.1)))
    return out


def _saved_bytes(fn: Callable[[], torch.Tensor]) -> int:
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--quick", action="store_true", help="few runs (a smoke check, e.g. on a GPU)")
    ap.add_argument("--runs", type=int, default=None, help="timed runs per entry (default 25, quick 5)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available on this machine")
    runs = args.runs or (5 if args.quick else 25)
    warmup = 2 if args.quick else 3
    try:
        import timm  # noqa: F401

        with_timm = True
    except ImportError:
        with_timm = False

    gen = torch.Generator(device=device).manual_seed(0)
    inputs = {
        "conv": torch.randn(128, 64, 32, 32, device=device, generator=gen).requires_grad_(),
        "seq": torch.randn(32, 256, 512, device=device, generator=gen).requires_grad_(),
    }
    grads = {k: torch.ones_like(v) for k, v in inputs.items()}
    entries = _entries(with_timm)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def step(e: Entry) -> float:
        x = inputs[e.group]
        x.grad = None
        sync()
        with _prefix_op() if e.prefix else contextlib.nullcontext():
            t0 = time.perf_counter()
            e.module(x).backward(grads[e.group])
            sync()
            return time.perf_counter() - t0

    for e in entries:
        e.module.train()
        e.saved = _saved_bytes(lambda e=e: e.module(inputs[e.group]))
        for _ in range(warmup):
            step(e)
    for _ in range(runs):  # round-robin
        for e in entries:
            e.times.append(step(e))

    med = {e.name: statistics.median(e.times) * 1e3 for e in entries}
    drop_c, drop_s = med["nn.Dropout(0.1)"], med["nn.Dropout(0.1) seq"]
    timm_ms = med.get("timm DropBlock2d(0.1, 7)")
    tv_ms = med["torchvision DropBlock2d(0.1, 7)"]
    print(f"device: {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else platform.processor() or 'cpu'}), "
          f"torch {torch.__version__}, torchvision {torchvision.__version__}, threads {torch.get_num_threads()}, "
          f"runs {runs} (median), timm {'yes' if with_timm else 'not installed'}")
    print()
    print("| op | input | fwd+bwd median ms | vs nn.Dropout | vs timm DropBlock | vs torchvision DropBlock | saved bytes/elem |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for e in entries:
        x = inputs[e.group]
        ref = drop_c if e.group == "conv" else drop_s
        shape = "x".join(map(str, x.shape))
        vs_timm = f"{med[e.name] / timm_ms:.2f}x" if (timm_ms and e.group == "conv") else "-"
        vs_tv = f"{med[e.name] / tv_ms:.3f}x" if e.group == "conv" else "-"
        print(f"| {e.name} | {shape} | {med[e.name]:.2f} | {med[e.name] / ref:.2f}x | {vs_timm} | {vs_tv} | "
              f"{e.saved / x.numel():.4f} |")
    print()
    checks: list[tuple[str, bool]] = []
    saved = {e.name: e.saved for e in entries}
    for name in CONV_PATTERNS:
        p = CONV_PATTERNS[name]
        if p.share_c:
            if timm_ms:
                checks.append((f"{name}: {med[name] / timm_ms:.2f}x timm DropBlock2d <= 1.2x", med[name] <= 1.2 * timm_ms))
        else:
            checks.append((f"{name}: {med[name] / drop_c:.2f}x nn.Dropout <= 0.6x", med[name] <= 0.6 * drop_c))
        checks.append((f"{name}: {med[name] / tv_ms:.3f}x torchvision DropBlock2d <= 0.25x", med[name] <= 0.25 * tv_ms))
        checks.append((f"{name}: saved {saved[name]} B <= nn.Dropout's {saved['nn.Dropout(0.1)']} B",
                       saved[name] <= saved["nn.Dropout(0.1)"]))
        old = med[f"{name} (pre-fix op)"]
        checks.append((f"{name}: {med[name] / old:.3f}x the pre-fix op <= 1.05x", med[name] <= 1.05 * old))
    for name in SEQ_PATTERNS:
        checks.append((f"{name}: {med[name] / drop_s:.2f}x nn.Dropout <= 1.0x", med[name] <= drop_s))
        checks.append((f"{name}: saved {saved[name]} B <= nn.Dropout's {saved['nn.Dropout(0.1) seq']} B",
                       saved[name] <= saved["nn.Dropout(0.1) seq"]))
    if timm_ms:
        ours = med["ours DropBlock2d(0.1, 7)"]
        checks.append((f"ours DropBlock2d: {ours / tv_ms:.3f}x torchvision, {ours / timm_ms:.2f}x timm (info)", True))
    for text, ok in checks:
        print(f"- {'PASS' if ok else 'MISS'} {text}")


if __name__ == "__main__":
    main()
