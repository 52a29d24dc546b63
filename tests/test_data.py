"""Data loaders of chapter 9, on small files written here in the real formats (IDX, CIFAR-10)."""

import gzip
import pickle

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
