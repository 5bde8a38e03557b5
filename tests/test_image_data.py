"""Image datasets on the real shared copies (shared/data beside the checkout; see shared/data/SOURCES.md)."""
import gzip
import shutil
import time

import numpy as np
import pytest
import torch

import asintrovae.data as data
from asintrovae.data import (DatasetNotFoundError, LoaderBatches, TensorBatches, cache_dir, image_dataset,
                             load_images)

from datapaths import SHARED, tree
CELEBA_SUBSET = 'celeba-subset/img_align_celeba_89x109'
pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason=f'no shared data copy at {SHARED}')


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    "Every test caches into its own folder, never into the (read-only) shared copy or the user's cache."
    monkeypatch.setenv('ASINTROVAE_CACHE', str(tmp_path/'cache'))
    monkeypatch.delenv('ASINTROVAE_DATA', raising=False)
    return tmp_path/'cache'


def test_mnist_full_counts_and_pixels():
    train, test = load_images('mnist', 28, data_root=SHARED), load_images('mnist', 28, 'test', data_root=SHARED)
    assert train.shape == (60_000, 1, 28, 28) and test.shape == (10_000, 1, 28, 28) and train.dtype == torch.uint8
    raw = np.frombuffer(gzip.open(SHARED/'MNIST'/'raw'/'train-images-idx3-ubyte.gz').read()[16:], np.uint8)
    assert abs(train.double().mean().item() - raw.mean()) < 1e-9 and abs(raw.mean() - 33.318) < 1e-3
    assert torch.equal(train[-1, 0], torch.from_numpy(raw[-784:].reshape(28, 28).copy()))       # row-major, last image last
    padded = load_images('mnist', 32, data_root=SHARED, limit=3)
    assert padded.shape == (3, 1, 32, 32) and torch.equal(padded[..., 2:30, 2:30], train[:3]) and padded[..., :2, :].max() == 0


def test_cifar_partial_counts_and_layout():
    train, test = load_images('cifar10', 32, data_root=SHARED), load_images('cifar10', 32, 'test', data_root=SHARED)
    assert train.shape == (5_085, 3, 32, 32) and test.shape == (1_017, 3, 32, 32) and train.dtype == torch.uint8
    with np.load(SHARED/'cifar10-partial'/'cifar10_partial.npz') as z: row = z['data_batch_2_data'][5]
    k, c, i, j = 1_017 + 5, 2, 7, 30                                   # 6th image of batch 2, blue channel
    assert train[k, c, i, j] == row[c*1024 + i*32 + j]
    assert test[0, 0, 0, :3].tolist() == [158, 159, 165]


def test_celeba_subset_at_64px_is_decoded_once(private_cache, monkeypatch):
    t0 = time.perf_counter()
    x = load_images('celeba', 64, data_root=SHARED, folder=CELEBA_SUBSET)
    first = time.perf_counter() - t0
    assert x.shape == (7_000, 3, 64, 64) and x.dtype == torch.uint8 and 60 < x.float().mean() < 160
    assert len(list(private_cache.glob('celeba-train-64px-7000-*.pt'))) == 1
    def no_decoding(*a, **k): raise AssertionError('decoded again instead of reading the cache')
    monkeypatch.setattr(data, '_decode', no_decoding)
    t0 = time.perf_counter()
    assert torch.equal(load_images('celeba', 64, data_root=SHARED, folder=CELEBA_SUBSET), x)
    assert time.perf_counter() - t0 < first/3
    with pytest.raises(AssertionError, match='decoded again'):          # another resolution is another entry
        load_images('celeba', 32, data_root=SHARED, folder=CELEBA_SUBSET, limit=2)


def test_celeba_split_and_crop():
    with pytest.raises(DatasetNotFoundError, match="is in split 'test'"):   # images 1..7000 are all training images
        load_images('celeba', 64, 'test', data_root=SHARED, folder=CELEBA_SUBSET)
    half = load_images('celeba', 64, data_root=SHARED, folder=CELEBA_SUBSET, limit=32).float()
    orig = load_images('celeba', 64, data_root=SHARED, folder='celeba-subset/img_align_celeba').float()
    assert orig.shape == half.shape                                    # 32 images at 178x218, same region cropped
    assert (half - orig).abs().mean() < 8 < 30 < (half - orig.roll(1, 0)).abs().mean()


def test_flowers_folder():
    x = load_images('folder:flowers-subset/jpg', 32, data_root=SHARED)
    assert x.shape == (408, 3, 32, 32) and x.dtype == torch.uint8 and x.min() == 0 and x.max() == 255
    with pytest.raises(ValueError, match='choose one of train, all'):
        load_images('folder:flowers-subset/jpg', 32, 'test', data_root=SHARED)


def test_missing_and_wrong_requests_name_the_path(tmp_path):
    for name, where in [('mnist', tmp_path/'MNIST'/'raw'), ('cifar10', tmp_path/'cifar10-partial'/'cifar10_partial.npz'),
                        ('celeba', tmp_path/'celeba'/'img_align_celeba'), ('folder:flowers/jpg', tmp_path/'flowers'/'jpg')]:
        res = 28 if name == 'mnist' else 32
        with pytest.raises(DatasetNotFoundError) as e: load_images(name, res, data_root=tmp_path)
        assert str(where) in str(e.value) and ('download=True' in str(e.value) or 'data_root=' in str(e.value)), str(e.value)
    with pytest.raises(DatasetNotFoundError, match='mmlab.ie.cuhk.edu.hk'): load_images('celeba', 64, data_root=tmp_path)
    with pytest.raises(ValueError, match='resolution 100 is not available'): load_images('celeba', 100, data_root=SHARED)
    with pytest.raises(ValueError, match='resolution 64 is not available'): load_images('cifar10', 64, data_root=SHARED)


@pytest.fixture
def read_only_root(tmp_path):
    "A read-only data root made here (4 flower images, folders and files without write permission), made writable again after."
    root = tmp_path/'ro'; jpg = root/'flowers-subset'/'jpg'; jpg.mkdir(parents=True)
    for f in sorted((SHARED/'flowers-subset'/'jpg').glob('*.jpg'))[:4]: shutil.copy(f, jpg/f.name)
    paths = [*root.rglob('*'), root]
    for p in paths: p.chmod(0o555 if p.is_dir() else 0o444)
    yield root
    for p in paths: p.chmod(0o755 if p.is_dir() else 0o644)


def test_read_only_root_is_never_written(read_only_root, tmp_path, monkeypatch):
    monkeypatch.delenv('ASINTROVAE_CACHE')
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path/'user'))
    assert cache_dir(read_only_root) == tmp_path/'user'/'asintrovae'
    before = tree(read_only_root)
    load_images('folder:flowers-subset/jpg', 28, data_root=read_only_root)
    assert tree(read_only_root) == before and len(list((tmp_path/'user'/'asintrovae').glob('*.pt'))) == 1


def test_writable_root_gets_the_cache_unless_one_is_set(tmp_path, monkeypatch):
    "A writable data root holds the cache only when nothing else is configured; the test suite always configures one."
    root = tmp_path/'data'; (root/'pics').mkdir(parents=True)
    shutil.copy(sorted((SHARED/'flowers-subset'/'jpg').glob('*.jpg'))[0], root/'pics'/'a.jpg')
    before = tree(root)
    load_images('folder:pics', 28, data_root=root)                      # the suite's private cache (fixture above)
    assert tree(root) == before
    monkeypatch.delenv('ASINTROVAE_CACHE')
    assert cache_dir(root) == root/'cache'


def test_changed_source_invalidates_cache(tmp_path, private_cache):
    src = tmp_path/'pics'; src.mkdir()
    jpgs = sorted((SHARED/'flowers-subset'/'jpg').glob('*.jpg'))[:3]
    for f in jpgs: shutil.copy(f, src/f.name)
    a = load_images('folder:pics', 32, data_root=tmp_path)
    shutil.copy(jpgs[0], src/jpgs[1].name)                             # one picture replaced by another
    b = load_images('folder:pics', 32, data_root=tmp_path)
    assert torch.equal(b[1], a[0]) and not torch.equal(b[1], a[1])
    assert len(list(private_cache.glob('*.pt'))) == 2


def test_batch_streams_deterministic_and_resumable():
    x = load_images('folder:flowers-subset/jpg', 32, data_root=SHARED, limit=14)
    t = TensorBatches(x, 4, seed=7, flip=True)
    loader = LoaderBatches(image_dataset('folder:flowers-subset/jpg', 32, data_root=SHARED, limit=14), 4, seed=7, flip=True, num_workers=1)
    first = [t.next() for _ in range(5)]                              # 3 batches an epoch: crosses an epoch boundary
    assert all(b.shape == (4, 3, 32, 32) and b.dtype == torch.float32 and 0 <= b.min() and b.max() <= 1 for b in first)
    for b in first: assert torch.equal(loader.next(), b)               # workers + DataLoader give the same stream
    state = t.state_dict(); ahead = [t.next() for _ in range(4)]
    for s in (TensorBatches(x, 4, seed=0, flip=True), LoaderBatches(loader.dataset, 4, seed=0, flip=True, num_workers=1)):
        s.load_state_dict(state)
        for b in ahead: assert torch.equal(s.next(), b)
    other = TensorBatches(x, 4, seed=8, flip=True)
    assert not torch.equal(other.next(), first[0])
