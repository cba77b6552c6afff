"""Labelled image datasets read into one shape, ImageData, whatever their source; images decoded with Pillow.

    data = load_image_data("digits", None, TaskOptions())     # scikit-learn's 1,797 handwritten digits, no files
    open_image(data.train_images[0]), data.label_names[data.train_labels[0]]

Sources: the UCI handwritten digits that scikit-learn ships (digits: 1,797 8 x 8 grey images, 10 classes), a user's own
(images: a folder with one subfolder per class, or train/ and val/ (or eval/, test/, validation/) folders of class
subfolders; or a .csv / .jsonl file of image paths and labels), and Hugging Face datasets with an image column by
name (cifar100, food101, flowers102, resisc45, imagenet), as the GiVA authors load them. Images stay where they are
(paths, or the dataset's lazy rows) until a batch decodes them.

Refused before any point runs, each with the path: an image that Pillow cannot read, a folder without class
subfolders, a single class, a missing image or label column, an image file the csv names that does not exist.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from dataclasses import dataclass

from .base import TaskOptions, load_hub_dataset
from .textdata import SPLIT_SEED, line_list, read_columns, split_rows, sorted_labels, to_text_data

EVAL_FOLDERS = ("val", "validation", "eval", "test")  # the held-out split's folder beside train/, the first found
# name -> (load_dataset arguments, train split, eval split, image column, label column): the authors' sources and
# the splits they report on (CIFAR-100 test, Food-101 validation, Flowers-102 and RESISC45 test)
HF_SOURCES = {
    "cifar100": (("uoft-cs/cifar100",), "train", "test", "img", "fine_label"),
    "food101": (("ethz/food101",), "train", "validation", "image", "label"),
    "flowers102": (("dpdl-benchmark/oxford_flowers102",), "train", "test", "image", "label"),
    "resisc45": (("timm/resisc45",), "train", "test", "image", "label"),
    "imagenet": (("ILSVRC/imagenet-1k",), "train", "validation", "image", "label"),
}
IMAGE_DATASETS = ("digits", *HF_SOURCES, "images")


@dataclass
class ImageData:
    """Two splits of images (paths, PIL images or lazy dataset rows: open_image reads any) and class ids."""

    train_images: Sequence
    train_labels: list[int]
    eval_images: Sequence
    eval_labels: list[int]
    label_names: list[str]


class HubImages(Sequence):
    """The images of a Hugging Face dataset's column at `indices`, decoded when read (not all at once)."""

    def __init__(self, dataset, column: str, indices: list[int] | None = None):
        self.dataset, self.column = dataset, column
        self.indices = list(range(len(dataset))) if indices is None else indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return HubImages(self.dataset, self.column, self.indices[i])
        return self.dataset[self.indices[i]][self.column]


def open_image(item):
    """A PIL image from a path (decoded now; an unreadable file is an error naming it) or a PIL image."""
    from PIL import Image, UnidentifiedImageError

    if not isinstance(item, str):
        return item
    try:
        with Image.open(item) as image:
            image.load()
            return image
    except FileNotFoundError:
        raise FileNotFoundError(f"image {item} not found; check the path (csv paths are relative to the file)") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"image {item} cannot be read ({type(e).__name__}: {e}); fix or remove that file") from None


def image_extensions() -> set[str]:
    from PIL import Image

    return {ext for ext, kind in Image.registered_extensions().items() if kind in Image.OPEN}


def check_images(paths: list[str]) -> None:
    """Every file opens as an image (its header parsed and its data verified, not decoded), before any point."""
    from PIL import Image

    for path in paths:
        try:
            with Image.open(path) as image:
                image.verify()
        except FileNotFoundError:
            raise FileNotFoundError(f"image {path} not found; check the path (csv paths are relative to the file)") from None
        except Exception as e:  # noqa: BLE001 - Pillow raises many kinds for a bad file
            raise ValueError(f"image {path} cannot be read ({type(e).__name__}: {e}); fix or remove that file") from None


def folder_rows(folder: str) -> list[tuple[str, str]]:
    """(path, class) of every image file in folder/<class>/ (files of other types are left out)."""
    extensions = image_extensions()
    classes = sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)))
    rows = [(os.path.join(folder, c, f), c) for c in classes for f in sorted(os.listdir(os.path.join(folder, c)))
            if os.path.splitext(f)[1].lower() in extensions]
    if not rows:
        raise ValueError(f"image folder {folder} has no class subfolders holding images; lay it out as "
                         f"{folder}/<class>/<image> (one subfolder per class), or give train_file (csv / jsonl)")
    return rows


def read_image_folder(root: str, opts: TaskOptions) -> tuple[list, list, list[str] | None]:
    """(train rows, eval rows, class names): root/train/ and root/val/ (or eval/, test/, validation/), whose classes
    must agree (names None), else root's class folders with a fixed held-out split (eval_fraction)."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"image folder {root} does not exist; give image_dir, a folder of class subfolders")
    if os.path.isdir(os.path.join(root, "train")):
        held_out = next((os.path.join(root, f) for f in EVAL_FOLDERS if os.path.isdir(os.path.join(root, f))), None)
        if held_out is None:
            raise ValueError(f"image folder {root} has train/ but no held-out folder ({', '.join(EVAL_FOLDERS)}); add "
                             "one, or put the class folders at the top for a held-out split")
        return folder_rows(os.path.join(root, "train")), folder_rows(held_out), None
    rows = folder_rows(root)
    return *split_rows(rows, opts.eval_fraction, root), sorted_labels({y for _, y in rows})


def read_image_table(path: str, opts: TaskOptions) -> list[tuple[str, str]]:
    """(image path, label) rows of a .csv / .tsv / .jsonl file; paths relative to the file's folder."""
    records, numbers = read_columns(path, opts.encoding, [("label", opts.label_column), ("image", opts.image_column)])
    base = os.path.dirname(os.path.abspath(path))
    rows = [(os.path.join(base, str(r[opts.image_column])), str(r[opts.label_column]).strip()) for r in records]
    missing = [n for n, (image, _) in zip(numbers, rows) if not os.path.isfile(image)]
    if missing:
        raise FileNotFoundError(f"{path}: the images of {line_list(missing)} (column {opts.image_column!r}) do not "
                                f"exist, e.g. {rows[numbers.index(missing[0])][0]}; paths are relative to the file")
    return rows


def from_rows(train: list, eval_: list, what: str, label_names: list[str] | None = None) -> ImageData:
    """ImageData from (image, class name) rows: two classes or more, the same in both splits."""
    classes = {y for _, y in train + eval_}
    if len(classes) < 2:
        raise ValueError(f"{what} has a single class {sorted(classes)}; a classifier needs at least two")
    # the text tasks' checks of class sets (train and eval the same, known names) and their ids, on the paths
    text = to_text_data([(image, None, y) for image, y in train], [(image, None, y) for image, y in eval_],
                        label_names, what)
    return ImageData(text.train_texts, text.train_labels, text.eval_texts, text.eval_labels, text.label_names)


def digits_pixels() -> tuple["np.ndarray", "np.ndarray"]:
    """(images (1797, 8, 8) as grey levels 0-255, labels (1797,)): the UCI handwritten digits as scikit-learn ships
    them (sklearn/datasets/data/digits.csv.gz: 64 values 0-16 and the digit per line), read without importing
    scikit-learn (seconds of imports on a busy machine)."""
    import importlib.util

    import numpy as np

    spec = importlib.util.find_spec("sklearn")
    if spec is None:
        raise ImportError("task digits reads the images scikit-learn ships: pip install scikit-learn (make install does)")
    path = os.path.join(spec.submodule_search_locations[0], "datasets", "data", "digits.csv.gz")
    table = np.loadtxt(path, delimiter=",", dtype=np.float32)  # (1797, 65)
    return (table[:, :64].reshape(-1, 8, 8) * (255 / 16)).round().astype(np.uint8), table[:, 64].astype(int)


def digits_data(opts: TaskOptions) -> ImageData:
    """The digits (8 x 8 grey images, 10 classes) with a fixed held-out split (eval_fraction)."""
    from PIL import Image

    images, labels = digits_pixels()
    rows = [(Image.fromarray(pixels, mode="L"), str(label)) for pixels, label in zip(images, labels)]
    train, eval_ = split_rows(rows, opts.eval_fraction, "the digits")
    return from_rows(train, eval_, "the digits", [str(d) for d in range(10)])


def write_digits_folder(folder: str, limit: int | None = None) -> str:
    """The digits as PNG files in folder/<digit>/<index>.png (an image folder, `images` with image_dir=folder)."""
    from PIL import Image

    images, labels = digits_pixels()
    for index, (pixels, label) in enumerate(zip(images[:limit], labels[:limit])):
        os.makedirs(os.path.join(folder, str(label)), exist_ok=True)
        Image.fromarray(pixels, mode="L").save(os.path.join(folder, str(label), f"{index:04d}.png"))
    return folder


def hub_data(dataset: str) -> ImageData:
    args, train_split, eval_split, image_column, label_column = HF_SOURCES[dataset]
    loaded = load_hub_dataset(dataset, args, f"or give data_dir (--data-dir) with {dataset}/ as an image folder")
    train, eval_ = loaded[train_split], loaded[eval_split]
    names = list(train.features[label_column].names)
    return ImageData(HubImages(train, image_column), list(train[label_column]), HubImages(eval_, image_column),
                     list(eval_[label_column]), names)


def load_image_data(dataset: str, data_dir: str | None, opts: TaskOptions, verify: bool = False) -> ImageData:
    """A named dataset (digits; the hub's by name, or data_dir/<name>/ as an image folder) or the user's own
    (images: image_dir, or train_file / eval_file); verify: open every image file (the check before a sweep)."""
    if dataset == "digits":
        data = digits_data(opts)
    elif dataset == "images" or data_dir:
        if dataset != "images":  # a named dataset as an image folder in data_dir
            root = os.path.join(data_dir, dataset)
            if not os.path.isdir(root):
                raise FileNotFoundError(f"no folder {root}: {dataset} is read from the Hugging Face hub with data_dir "
                                        f"empty (no --data-dir), or from data_dir/{dataset}/ as an image folder")
            train, eval_, names = read_image_folder(root, opts)
            what = root
        elif opts.image_dir:
            train, eval_, names = read_image_folder(opts.image_dir, opts)
            what = opts.image_dir
        elif opts.train_file:
            train, names, what = read_image_table(opts.train_file, opts), None, opts.train_file
            if opts.eval_file:
                eval_ = read_image_table(opts.eval_file, opts)
            else:  # one file: its classes, though a small held-out split may miss a rare one
                names = sorted_labels({y for _, y in train})
                train, eval_ = split_rows(train, opts.eval_fraction, opts.train_file)
        else:
            raise ValueError("task images needs task option image_dir (a folder of class subfolders) or train_file "
                             "(a .csv / .jsonl of image paths and labels, with image_column and label_column)")
        if verify:
            check_images([image for image, _ in train + eval_])
        data = from_rows(train, eval_, what, names)
    else:
        data = hub_data(dataset)
    return subsample(data, opts)


def subsample(data: ImageData, opts: TaskOptions) -> ImageData:
    """Fixed, seeded subsets (the same for every run seed) within max_train_examples and max_eval_examples."""
    def pick(images: Sequence, labels: list[int], limit: int | None):
        if limit is None or len(labels) <= limit:
            return images, labels
        keep = sorted(random.Random(SPLIT_SEED).sample(range(len(labels)), limit))
        if isinstance(images, HubImages):  # still lazy
            return HubImages(images.dataset, images.column, [images.indices[i] for i in keep]), [labels[i] for i in keep]
        return [images[i] for i in keep], [labels[i] for i in keep]

    train_images, train_labels = pick(data.train_images, data.train_labels, opts.max_train_examples)
    eval_images, eval_labels = pick(data.eval_images, data.eval_labels, opts.max_eval_examples)
    return ImageData(train_images, train_labels, eval_images, eval_labels, data.label_names)


if __name__ == "__main__":  # python -m bench.tasks.imagedata FOLDER: the digits written out as an image folder
    import sys

    print(write_digits_folder(sys.argv[1]))
