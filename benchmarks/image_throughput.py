"""Training throughput (images/second) of Soft-IntroVAE and AS-IntroVAE on image batches (issue #15: bf16 and
channels-last where they pay), every variant of the SAME model, loss and data in one process.

Data sets, widths and batch sizes are those of an image profile (default: laptop, i.e. MNIST 28 px, 1 channel,
z 32, width x1/4, batch 64; CelebA 64 px, 3 channels, z 128, width x1/8, batch 32), on random uint8 images of that
shape. Variants, all with the data held as one uint8 tensor (`TensorBatches`) unless named otherwise:

  float32                  TrainConfig(amp=False, channels_last=False): the baseline
  channels-last            channels_last='always' (model and batches in NHWC), float32 arithmetic
  bf16                     amp='always' (forward passes under bf16 autocast), contiguous layout
  bf16 + channels-last     both: what `amp=True, channels_last=True` (the default) chooses on a CPU with bf16 units
  float32, DataLoader      the float32 baseline fed by a torch DataLoader with 2 workers instead of TensorBatches:
                           the data-loading difference, kept apart from the precision/layout one

The variants are timed in alternating rounds (the order rotates every round, so a drift of a shared machine hits them
alike); each figure is the median over rounds of images/second; a ratio is a variant's median over float32's median
(> 1: faster than float32). The AS term stays on (c < 1) for the whole timing. The default TrainConfig's decision on
this machine (`precision_plan`) is recorded beside the numbers.

Usage: python benchmarks/image_throughput.py [--sets mnist celeba64] [--profile laptop] [--width-scale W]
       [--iters 4] [--rounds 5] [--threads 1] [--no-loader] [--device cpu] [--compile] [--out benchmarks/results]
"""
import argparse, json, os, platform, statistics, time
from pathlib import Path

import torch

from asintrovae.data import LoaderBatches, TensorBatches
from asintrovae.losses import Betas, make_loss
from asintrovae.reproduce import IMAGE_SETS, image_model, image_protocol
from asintrovae.train import Trainer, TrainConfig, cpu_capabilities, precision_plan

METHODS = ('s-introvae', 'as-introvae')
VARIANTS = {'float32': (False, False), 'channels-last': (False, 'always'), 'bf16': ('always', False),
            'bf16 + channels-last': ('always', 'always'), 'float32, DataLoader': (False, False)}


class _Uint8Dataset(torch.utils.data.Dataset):
    def __init__(self, images): self.images = images
    def __len__(self): return len(self.images)
    def __getitem__(self, i): return self.images[i]


def trainer(method, key, variant, width, batch, device, compile_):
    "A Trainer for `variant` of `method` on image set `key`, past its first (untimed) iterations."
    spec = IMAGE_SETS[key]
    images = torch.randint(0, 256, (8*batch, spec.channels, spec.resolution, spec.resolution), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = image_model(method, key, width).to(device)
    loss = make_loss(method, Betas(*spec.betas), total_iterations=10**9)                    # c stays < 1
    amp, channels_last = VARIANTS[variant]
    cfg = TrainConfig(iterations=2, warmup=0, log_every=10**9, checkpoint_every=10**9, progress=False, amp=amp,
                      channels_last=channels_last, compile=compile_)
    batches = (LoaderBatches(_Uint8Dataset(images), batch, device=device, num_workers=2) if 'DataLoader' in variant
               else TensorBatches(images, batch, device=device))
    tr = Trainer(model, loss, batches, cfg)
    tr.fit()
    return tr


def images_per_second(tr, iters, batch):
    "Train `iters` more iterations; -> images per second."
    sync = torch.cuda.synchronize if tr.device.type == 'cuda' else (lambda: None)
    sync(); t0 = time.perf_counter()
    tr.cfg.iterations += iters; tr.fit()
    sync(); return iters*batch/(time.perf_counter() - t0)


def measure(method, key, variants, width, batch, iters, rounds, device, compile_):
    "Median images/s of each variant over `rounds` alternating rounds -> {variant: dict(median, rounds)}."
    trs = {v: trainer(method, key, v, width, batch, device, compile_) for v in variants}
    got = {v: [] for v in variants}
    for r in range(rounds):
        order = variants[r % len(variants):] + variants[:r % len(variants)]
        for v in (order if r % 2 == 0 else order[::-1]): got[v].append(images_per_second(trs[v], iters, batch))
    return {v: dict(median=statistics.median(ips), rounds=ips) for v, ips in got.items()}


def table(res):
    "The markdown table of a result: images/s and the ratio to float32 per (set, method)."
    head = ['set', 'method', *res['variants']]
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|'*len(head)]
    for row in res['rows']:
        base = row['ips']['float32']['median']
        cells = [f"{row['ips'][v]['median']:.1f}" + ('' if v == 'float32' else f" ({row['ips'][v]['median']/base:.2f}x)") for v in res['variants']]
        lines.append(f"| {row['set']} ({row['resolution']} px, {row['channels']} ch, width x{row['width_scale']:g}, batch {row['batch']}) "
                     f"| {row['method']} | " + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--sets', nargs='+', default=['mnist', 'celeba64'])
    p.add_argument('--profile', default='laptop', help='the image profile whose width and batch size each set uses')
    p.add_argument('--width-scale', type=float, default=None, help="override the profile's width for every set")
    p.add_argument('--iters', type=int, default=4)
    p.add_argument('--rounds', type=int, default=5)
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--no-loader', action='store_true', help='skip the DataLoader variant')
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--compile', action='store_true', help='torch.compile the forwards in every variant')
    p.add_argument('--out', default='benchmarks/results')
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    variants = [v for v in VARIANTS if not (a.no_loader and 'DataLoader' in v)]
    rows, load_start = [], os.getloadavg()
    for key in a.sets:
        P, spec = image_protocol(a.profile, key), IMAGE_SETS[key]
        width, batch = a.width_scale or P['width_scale'], P['batch_size']
        for method in METHODS:
            ips = measure(method, key, variants, width, batch, a.iters, a.rounds, device, a.compile)
            rows.append(dict(set=key, resolution=spec.resolution, channels=spec.channels, z_dim=spec.z_dim, width_scale=width,
                             batch=batch, method=method, ips=ips,
                             ratio={v: ips[v]['median']/ips['float32']['median'] for v in variants}))
            print(f'{key:9s} {method:12s} ' + '  '.join(f"{v} {ips[v]['median']:.1f} img/s ({rows[-1]['ratio'][v]:.2f}x)" for v in variants), flush=True)
    res = dict(rows=rows, variants=variants, device=str(device), profile=a.profile, iters=a.iters, rounds=a.rounds,
               threads=a.threads, compile=a.compile, default_decision=precision_plan(device),
               gpu=torch.cuda.get_device_name(0) if device.type == 'cuda' else None,
               cpu={k: v for k, v in cpu_capabilities().items() if k in ('cpu_name', 'avx512_f', 'avx512_bf16', 'amx_bf16', 'num_physical_cores')},
               load_average=dict(start=load_start, end=os.getloadavg()), machine=f'{platform.machine()} CPU, {os.cpu_count()} cores', torch=torch.__version__,
               when=time.strftime('%Y-%m-%d %H:%M'))
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out)/f'image_throughput_{device.type}.json').write_text(json.dumps(res, indent=2))
    print(table(res))


if __name__ == '__main__':
    main()
