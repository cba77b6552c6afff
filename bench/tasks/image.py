"""Image classification with an image-classification head (any AutoModelForImageClassification: ViT, DINOv2,
CLIP's vision tower with a linear head, ...): digits, the user's images, and the hub's datasets (imagedata.py).

    setup = setup_task("digits", "vit-micro", batch_size=32, seq_len=0, seed=0)
    batch = next(setup.train_batches)        # {"pixel_values": (B, C, H, W), "labels": (B,)}

Images are decoded with Pillow when a batch is made (outside the timed step), converted to the model's channels,
and made into pixels by the checkpoint's own image processor (AutoImageProcessor: its resize, crop and
normalization) where it has one, else by a plain resize to the model's image size, scaling to [0, 1] and
normalization with mean 0.5 and std 0.5 (ViT's); the row's image_transform says which, with its settings. Task
option augment adds the GiVA authors' training augmentation (a random crop of 50-100% of the area, aspect 3/4 to
4/3, and a horizontal flip with probability 1/2) to train batches, drawn from the run seed. seq_len is not used:
the image size is the model's.
"""

from __future__ import annotations

import math
import random

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models import image_shape, image_tokens, load_image_processor, load_model
from .base import TaskOptions, TaskSetup, endless, head_modules
from .imagedata import ImageData, load_image_data, open_image
from .metrics import check_metric, compute_metrics, label_kind

MAX_CACHED_EVAL_BYTES = 256 * 2**20  # eval pixels up to this size are made once; larger sets at each evaluation


def task_metric(task, data: ImageData, opts: TaskOptions) -> str:
    """Task option metric (accuracy or matthews), else accuracy; one that does not fit class labels is an error."""
    metric = opts.metric or "accuracy"
    check_metric(metric, label_kind(len(data.label_names), False), f"task {task.name!r}")
    return metric


def check(task, data_dir: str | None, opts: TaskOptions) -> None:
    """The data read and every image file opened, without a model: the errors a point would raise, before any."""
    task_metric(task, load_image_data(task.dataset, data_dir, opts, verify=True), opts)


def describe_processor(processor) -> str:
    """A checkpoint's image processor and what it does, from its settings."""
    settings = processor.to_dict()
    steps = []
    if settings.get("do_resize"):
        steps.append(f"resize {settings.get('size')} (resample {settings.get('resample')})")
    if settings.get("do_center_crop"):
        steps.append(f"center crop {settings.get('crop_size')}")
    if settings.get("do_rescale"):
        steps.append(f"rescale x{settings.get('rescale_factor'):.6g}")
    if settings.get("do_normalize"):
        steps.append(f"normalize mean {list(settings.get('image_mean'))} std {list(settings.get('image_std'))}")
    return f"{type(processor).__name__} (the checkpoint's): " + ", ".join(steps)


def random_crop_flip(image, rng: random.Random):
    """The authors' augmentation in Pillow: a crop of 50-100% of the area with aspect 3/4 to 4/3 (torchvision's
    RandomResizedCrop scale=(0.5, 1), before the processor resizes), then a horizontal flip with probability 1/2."""
    from PIL import Image

    width, height = image.size
    for _ in range(10):  # torchvision's tries, then the whole image
        area = width * height * rng.uniform(0.5, 1.0)
        aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        w, h = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
        if 0 < w <= width and 0 < h <= height:
            left, top = rng.randint(0, width - w), rng.randint(0, height - h)
            image = image.crop((left, top, left + w, top + h))
            break
    return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else image


def setup(task, entry, opts, *, batch_size, seq_len, seed, device, dtype, data_dir=None, load=load_model) -> TaskSetup:
    """An img_cls head, one output per class, cross-entropy; the head trains in full beside the adapter."""
    task.head_for(entry)  # raises where the model has no image-classification head
    data: ImageData = load_image_data(task.dataset, data_dir, opts)
    metric = task_metric(task, data, opts)
    model = load(entry, "img_cls", dtype=dtype, device=device, num_labels=len(data.label_names), seed=seed)
    channels, height, width = image_shape(model.config)
    mode = "L" if channels == 1 else "RGB"
    processor = load_image_processor(entry)
    if processor is not None:
        transform = describe_processor(processor)
    else:
        transform = (f"plain (no image processor): {mode}, resize to {height} x {width} bilinear, scale to [0, 1], "
                     "normalize mean 0.5 std 0.5")
    if opts.augment:
        transform = "train: random crop 50-100% of the area, aspect 3/4-4/3, flip p=0.5; then " + transform
    model_dtype = next(model.parameters()).dtype

    def pixels(images) -> torch.Tensor:
        """(B, C, H, W) in the model's dtype."""
        if processor is not None:
            values = processor(images=images, return_tensors="pt")["pixel_values"]
        else:
            arrays = [np.asarray(image.resize((width, height), resample=2), dtype=np.float32) for image in images]
            values = (torch.from_numpy(np.stack(arrays)) / 255.0 - 0.5) / 0.5  # (B, H, W) or (B, H, W, C)
            values = values.unsqueeze(1) if values.dim() == 3 else values.permute(0, 3, 1, 2)
        return values.to(device=device, dtype=model_dtype)

    def encode(images: list, labels: list[int], rng: random.Random | None = None) -> dict:
        decoded = [open_image(image).convert(mode) for image in images]
        if rng is not None:
            decoded = [random_crop_flip(image, rng) for image in decoded]
        return {"pixel_values": pixels(decoded), "labels": torch.tensor(labels, device=device)}

    augment_rng = random.Random(seed) if opts.augment else None

    def make_batch(indices: list[int]) -> dict:
        return encode([data.train_images[i] for i in indices], [data.train_labels[i] for i in indices], augment_rng)

    starts = range(0, len(data.eval_labels), opts.eval_batch_size)
    chunks = [list(range(start, min(start + opts.eval_batch_size, len(data.eval_labels)))) for start in starts]

    def eval_batch(chunk: list[int]) -> dict:
        return encode([data.eval_images[i] for i in chunk], [data.eval_labels[i] for i in chunk])

    cached = None
    if len(data.eval_labels) * channels * height * width * 4 <= MAX_CACHED_EVAL_BYTES:
        cached = [eval_batch(chunk) for chunk in chunks]
    kind = label_kind(len(data.label_names), False)

    @torch.no_grad()
    def evaluate(model: nn.Module) -> dict:
        model.eval()
        predictions, loss_sum = [], 0.0
        for batch in cached or map(eval_batch, chunks):
            logits = model(pixel_values=batch["pixel_values"]).logits.float()  # (B, classes)
            predictions.append(logits.argmax(-1).cpu())
            loss_sum += F.cross_entropy(logits, batch["labels"], reduction="sum").item()
        scores = compute_metrics(torch.cat(predictions), torch.tensor(data.eval_labels), kind)
        return {**scores, "loss": loss_sum / len(data.eval_labels)}

    return TaskSetup(model, endless(len(data.train_labels), batch_size, seed, make_batch), None, evaluate,
                     head_modules(model), batch_size * image_tokens(model.config), data.label_names,
                     len(data.eval_labels), metric,
                     steps_per_epoch=len(data.train_labels) // batch_size, task_columns={"image_transform": transform})
