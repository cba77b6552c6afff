"""Checks of the figure files a report or history writes: a PNG that is not blank, an SVG that parses."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from matplotlib.image import imread


def assert_png_not_blank(path: str) -> None:
    image = imread(path)
    assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 600, image.shape
    assert image[..., :3].var() > 0, f"{path} is blank"


def assert_svg_parses(path: str) -> ET.Element:
    root = ET.parse(path).getroot()
    assert root.tag.endswith("svg")
    return root
