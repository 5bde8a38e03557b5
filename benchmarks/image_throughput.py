"""Training throughput (images/second) of Soft-IntroVAE and AS-IntroVAE on image batches (issue: images, speed).

For each resolution (32: the CIFAR-10 shape; 128: CelebA-128) and method, two configurations of the SAME model and
loss are timed in the same process:

  fast:  data held on the device as one uint8 tensor (TensorBatches), and on CUDA bf16 autocast, channels_last,
         fused Adam (TrainConfig defaults) and optionally torch.compile (--compile);
  plain: a DataLoader over a uint8 TensorDataset with 2 workers, fp32, contiguous layout, no compile.

It prints images/second for both and their ratio (the figure to quote). Each configuration is timed --repeats times,
alternating fast and plain so neither always runs first, and the best time of each is kept. Widths are the paper's
unless --width-scale is given (use e.g. 0.25 on a CPU, where the full 128 px model is very slow). Usage:
  python benchmarks/image_throughput.py [--device cuda] [--iters 20] [--repeats 2] [--width-scale 1.0] [--compile] [--out benchmarks/results]
"""
import argparse, json, os, platform, time
from pathlib import Path

import torch

from asintrovae.data import LoaderBatches, TensorBatches
from asintrovae.losses import Betas, make_loss
from asintrovae.models import image_vae
from asintrovae.train import Trainer, TrainConfig


class _Uint8Dataset(torch.utils.data.Dataset):
    def __init__(self, images): self.images = images
    def __len__(self): return len(self.images)
    def __getitem__(self, i): return self.images[i]


def images_per_second(method, resolution, batch, iters, device, width_scale, fast, compile_):
    torch.manual_seed(0)
    images = torch.randint(0, 256, (max(4*batch, 256), 3, resolution, resolution), dtype=torch.uint8)
    model = image_vae(resolution, 3, width_scale=width_scale).to(device)
    loss = make_loss(method, Betas(beta_kl=1.0, beta_rec=1.0, beta_neg=256.0), total_iterations=10**9)
    if fast:
        cfg = TrainConfig(iterations=3, warmup=0, log_every=10**9, progress=False, compile=compile_)
        batches = TensorBatches(images, batch, device=device)
    else:
        cfg = TrainConfig(iterations=3, warmup=0, log_every=10**9, progress=False, amp=False, channels_last=False)
        batches = LoaderBatches(_Uint8Dataset(images), batch, device=device, num_workers=2)
    tr = Trainer(model, loss, batches, cfg)
    tr.fit()                                                            # warm-up (and compilation)
    if device.type == 'cuda': torch.cuda.synchronize()
    tr.cfg.iterations = 3 + iters
    t0 = time.perf_counter(); tr.fit()
    if device.type == 'cuda': torch.cuda.synchronize()
    return iters*batch/(time.perf_counter() - t0)


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--iters', type=int, default=20)
    p.add_argument('--width-scale', type=float, default=1.0)
    p.add_argument('--compile', action='store_true')
    p.add_argument('--repeats', type=int, default=2)
    p.add_argument('--resolutions', type=int, nargs='+', default=[32, 128])
    p.add_argument('--out', default='benchmarks/results')
    a = p.parse_args()
    device = torch.device(a.device)
    rows = []
    for resolution, batch in ((r, {32: 32, 128: 16}.get(r, 16)) for r in a.resolutions):
        for method in ('s-introvae', 'as-introvae'):
            fast, plain = 0.0, 0.0
            for r in range(a.repeats):                                   # alternate the order; keep the best of each
                order = (True, False) if r % 2 == 0 else (False, True)
                for is_fast in order:
                    ips = images_per_second(method, resolution, batch, a.iters, device, a.width_scale, is_fast, a.compile and is_fast)
                    if is_fast: fast = max(fast, ips)
                    else: plain = max(plain, ips)
            rows.append(dict(resolution=resolution, batch=batch, method=method, fast=fast, plain=plain, ratio=fast/plain))
            print(f'{resolution:4d} px  {method:12s} fast {fast:9.1f} img/s   plain {plain:9.1f} img/s   ratio {fast/plain:5.2f}', flush=True)
    gpu = torch.cuda.get_device_name(0) if device.type == 'cuda' else None
    res = dict(rows=rows, device=str(device), gpu=gpu, width_scale=a.width_scale, compile=a.compile, iters=a.iters, repeats=a.repeats,
               machine=f'{platform.machine()} CPU, {os.cpu_count()} cores', torch=torch.__version__, when=time.strftime('%Y-%m-%d %H:%M'))
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out)/f'image_throughput_{device.type}.json').write_text(json.dumps(res, indent=2))


if __name__ == '__main__':
    main()
