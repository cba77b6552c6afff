"""Image tasks: the digits, a user's image folder and csv, the checks before a sweep, the img_cls head on ViT and
CLIP, a checkpoint's own image processor, pixel batches in profile and `estimate`, and a sweep end to end."""

from __future__ import annotations

import json

import pytest
import torch
from cli_runs import run_cli

from bench.config.sweep import Point
from bench.config.train import TrainSettings
from bench.models import choose_head, get_entry
from bench.tasks import check_task, setup_task
from bench.tasks.base import TaskOptions
from bench.tasks.image import random_crop_flip
from bench.tasks.imagedata import digits_pixels, load_image_data, write_digits_folder

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def digits_folder(tmp_path_factory):
    """200 of the digits as PNG files, one folder per class."""
    return write_digits_folder(str(tmp_path_factory.mktemp("digits")), limit=200)


def test_digits_are_the_ones_scikit_learn_ships():
    from sklearn.datasets import load_digits

    images, labels = digits_pixels()
    reference = load_digits()
    assert images.shape == (1797, 8, 8) and (labels == reference.target).all()
    assert (images == (reference.images * (255 / 16)).round()).all()
    data = load_image_data("digits", None, TaskOptions())
    assert (len(data.train_labels), len(data.eval_labels)) == (1438, 359)
    assert data.label_names == [str(d) for d in range(10)] and set(data.eval_labels) == set(range(10))


def test_an_image_folder_and_a_csv_of_its_paths_read_alike(digits_folder, tmp_path):
    opts = TaskOptions(image_dir=digits_folder)
    folder = load_image_data("images", None, opts, verify=True)
    assert (len(folder.train_labels), len(folder.eval_labels)) == (160, 40)
    assert folder.label_names == [str(d) for d in range(10)]
    table = tmp_path / "images.csv"
    paths = folder.train_images + folder.eval_images
    labels = [folder.label_names[y] for y in folder.train_labels + folder.eval_labels]
    table.write_text("file,digit\n" + "".join(f"{p},{y}\n" for p, y in zip(paths, labels)))
    listed = load_image_data("images", None, TaskOptions(train_file=str(table), image_column="file",
                                                         label_column="digit"), verify=True)
    pairs = sorted(zip(listed.train_images + listed.eval_images,
                       [listed.label_names[y] for y in listed.train_labels + listed.eval_labels]))
    assert pairs == sorted(zip(paths, labels))


def write_image_folder(root, classes: dict[str, int]):
    from PIL import Image

    for name, count in classes.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            Image.new("RGB", (4, 4), (10 * i, 0, 0)).save(root / name / f"{i}.png")
    return root


@pytest.mark.parametrize("case, message", [
    ("unreadable", "cannot be read"),
    ("no classes", "has no class subfolders holding images"),
    ("one class", "has a single class"),
    ("no label column", "label column 'label' is not in"),
    ("missing file", "do not exist"),
    ("no source", "task images needs task option image_dir"),
])
def test_bad_image_input_is_one_clear_error(tmp_path, case, message):
    root = tmp_path / "images"
    options = {"image_dir": str(root)}
    if case == "unreadable":
        write_image_folder(root, {"cat": 3, "dog": 3})
        (root / "dog" / "broken.png").write_bytes(b"\x89PNG not really")
    elif case == "no classes":
        root.mkdir()
        (root / "notes.txt").write_text("x")
    elif case == "one class":
        write_image_folder(root, {"cat": 6})
    elif case in ("no label column", "missing file"):
        write_image_folder(root, {"cat": 3, "dog": 3})
        table = tmp_path / "list.csv"
        header = "image,kind" if case == "no label column" else "image,label"
        table.write_text(f"{header}\nimages/cat/0.png,cat\nimages/dog/9.png,dog\n")
        options = {"train_file": str(table)}
    else:
        options = {}
    with pytest.raises((ValueError, FileNotFoundError), match=message) as error:
        check_task("images", None, options)
    if case == "unreadable":
        assert "broken.png" in str(error.value)


def test_heads_and_their_refusals():
    vit, llama = get_entry("vit-micro"), get_entry("llama-2m")
    assert choose_head(vit, "digits", "img_cls") == "img_cls" and choose_head(vit, "profile", None) == "img_cls"
    with pytest.raises(ValueError, match="classifies images, which model 'llama-2m'"):
        choose_head(llama, "digits", "img_cls")
    with pytest.raises(ValueError, match="reads text, but model 'vit-micro' is a vision model"):
        choose_head(vit, "sst2", "seq_cls")
    with pytest.raises(ValueError, match="planted feeds random tokens"):
        setup_task("planted", "vit-micro", batch_size=2, seq_len=8, seed=0)


def test_epochs_become_steps():
    assert TrainSettings(epochs=2.5).resolved(44).steps == 110
    assert TrainSettings(steps=7).resolved(0).steps == 7
    with pytest.raises(ValueError, match="needs a task with a train split"):
        TrainSettings(epochs=1).resolved(0)


def test_the_authors_augmentation_crops_and_flips_within_the_image():
    import random

    from PIL import Image

    image = Image.new("L", (40, 30))
    sizes = {random_crop_flip(image, random.Random(seed)).size for seed in range(20)}
    assert len(sizes) > 5 and all(w * h >= 0.5 * 40 * 30 - 40 and w <= 40 and h <= 30 for w, h in sizes)


# --- models: a checkpoint folder with its image processor, CLIP's vision tower -----------------


def save_checkpoint(folder, family: str, config: dict, processor=None) -> str:
    from transformers import AutoConfig, AutoModelForImageClassification

    torch.manual_seed(0)
    AutoModelForImageClassification.from_config(AutoConfig.for_model(family, **config)).save_pretrained(folder)
    if processor is not None:
        processor.save_pretrained(folder)
    return str(folder)


def test_a_checkpoint_folder_brings_its_own_image_processor(tmp_path):
    from transformers import ViTImageProcessorPil

    small = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, patch_size=4)
    processor = ViTImageProcessorPil(size={"height": 24, "width": 24}, image_mean=[0.2] * 3, image_std=[0.3] * 3)
    folder = save_checkpoint(tmp_path / "vit", "vit", {**small, "image_size": 24}, processor)
    setup = setup_task("digits", folder, batch_size=4, seq_len=1, seed=0, options={"max_eval_examples": 8})
    assert setup.task_columns["image_transform"].startswith("ViTImageProcessorPil (the checkpoint's)")
    assert "normalize mean [0.2, 0.2, 0.2] std [0.3, 0.3, 0.3]" in setup.task_columns["image_transform"]
    batch = next(setup.train_batches)
    assert batch["pixel_values"].shape == (4, 3, 24, 24) and setup.model.config.num_labels == 10
    assert setup.trainable_modules == ["classifier"] and setup.tokens_per_batch == 4 * (6 * 6 + 1)


def test_clip_vision_tower_gets_a_trained_linear_head_and_the_authors_targets(tmp_path):
    from giva.targets import find_targets

    vision = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=16,
                  patch_size=4)
    folder = save_checkpoint(tmp_path / "clip", "clip", {"vision_config": vision})
    setup = setup_task("profile", folder, batch_size=2, seq_len=1, seed=0)
    assert type(setup.model).__name__ == "CLIPForImageClassification" and setup.trainable_modules == ["classifier"]
    targets = find_targets(setup.model, None)
    assert sorted({name.rpartition(".")[2] for name in targets}) == ["fc1", "fc2", "k_proj", "q_proj", "v_proj"]
    assert len(targets) == 2 * 5  # out_proj and the classifier are not adapted
    assert next(setup.train_batches)["pixel_values"].shape == (2, 3, 16, 16)


# --- points: estimate on pixel batches, a sweep end to end ---------------------------------------


def point_of(**fields) -> Point:
    base = dict(model="vit-micro", task="profile", method="giva", rank=4, seed=0, batch_size=8, seq_len=64,
                dtype="float32", device="cpu", warmup_steps=1, timed_steps=2, threads=1, data_dir="",
                adapter_options="{}", task_options="{}", train="{}")
    return Point(**{**base, **fields})


def test_estimate_traces_pixel_batches_as_a_real_point_counts_them(tmp_path):
    from bench.run.estimate import estimate_point
    from bench.run.point import run_point

    point = point_of()
    estimated, measured = estimate_point(point), run_point(point, str(tmp_path))
    assert estimated["status"] == measured["status"] == "ok", (estimated["error"], measured["error"])
    for column in ("flops_per_step", "adapter_flops_per_step", "init_flops", "trainable_params", "tensor_params_bytes"):
        assert estimated[column] == measured[column] > 0, column
    assert estimated.get("tokens_per_s") is None and measured["tokens_per_s"] > 0


def test_digits_sweep_end_to_end(tmp_path):
    """LoRA, VeRA and GiVA on the digits with vit-micro, in a real sweep: rows, metric, transform, the report and
    its claim check (GiVA r 4 against VeRA r 32 and LoRA r 4)."""
    from bench.config.presets import make_sweep_config
    from bench.report.summary import build_report
    from bench.results.read import read_rows
    from bench.run.sweep import run_sweep

    config = make_sweep_config("image-quick", overrides=dict(
        ranks=[4], method_options={"vera": {"ranks": [32]}}, train={"steps": 40, "eval_every": 0}, isolate=False,
        task_options={"max_eval_examples": 120}))
    run_sweep(config, str(tmp_path), ["test"], log=lambda *_: None)
    rows = read_rows(str(tmp_path / "results.csv"))
    assert [row["method"] for row in rows] == ["lora", "vera", "giva"]
    for row in rows:
        assert row["status"] == "ok", row["error"]
        assert row["eval_metric"] == "accuracy" and int(row["eval_examples"]) == 120
        assert row["image_transform"].startswith("plain (no image processor): RGB, resize to 16 x 16")
        assert float(row["eval_score"]) != float(row["eval_score_before"])
        assert json.loads(row["eval_scores"]).keys() == {"accuracy", "matthews"}
    build_report([str(tmp_path)])
    summary = (tmp_path / "summary.md").read_text()
    assert "### vit-micro · task digits (accuracy before training" in summary and "| eval accuracy |" in summary
    claims = summary.split("## Claim check", 1)[1]
    assert "### vit-micro · task digits · accuracy" in claims and "| giva | 4 |" in claims


def test_an_unreadable_image_stops_the_cli_before_any_point(tmp_path):
    """One line on stderr naming the file, exit 2, no run directory."""
    root = write_image_folder(tmp_path / "images", {"cat": 3, "dog": 3})
    (root / "cat" / "torn.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(f'models = ["vit-micro"]\ntasks = ["images"]\nmethods = ["lora"]\n[task_options]\n'
                     f'image_dir = "{root}"\n')
    result = run_cli("run", "--config", str(sweep), "--out", str(tmp_path / "run"))
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "torn.jpg cannot be read" in lines[0], result.stderr
    assert not (tmp_path / "run").exists()
