"""CPU seconds to make one image training batch the way bench/tasks/image.py does: Pillow decodes JPEGs, the GiVA
authors' crop and flip, then an image processor (DINOv2's: resize the short side to 256, center crop 224,
normalize). It runs in the training process before each step's clock starts, so on a GPU it bounds the steps a
second; compare it with the step time.

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 .venv/bin/python tests/benchmarks/image_batch_cost.py [--batch 128] [--rounds 3]
"""

from __future__ import annotations

import argparse
import io
import random
import resource

import numpy as np
from PIL import Image
from transformers import ViTImageProcessorPil

from bench.tasks.image import random_crop_flip


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    # a 512 x 384 photo-like JPEG (Food-101's images are at most 512 px on their long side)
    rough = (np.random.default_rng(0).random((48, 64, 3)) * 255).astype("uint8")
    buffer = io.BytesIO()
    Image.fromarray(rough).resize((512, 384), Image.BICUBIC).save(buffer, "JPEG", quality=90)
    jpeg = buffer.getvalue()
    processor = ViTImageProcessorPil(size={"shortest_edge": 256}, crop_size={"height": 224, "width": 224},
                                     do_center_crop=True, image_mean=[0.485, 0.456, 0.406],
                                     image_std=[0.229, 0.224, 0.225], resample=3)
    rng = random.Random(0)
    for round_ in range(args.rounds):
        start = cpu_s()
        images = [random_crop_flip(Image.open(io.BytesIO(jpeg)).convert("RGB"), rng) for _ in range(args.batch)]
        pixels = processor(images=images, return_tensors="pt")["pixel_values"]
        print(f"round {round_}: {args.batch} images -> {tuple(pixels.shape)} in {cpu_s() - start:.2f} s of CPU")


if __name__ == "__main__":
    main()
