"""Augmentation keeps image and targets aligned; the hold-out split is deterministic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from nucscale.train import list_ids, split_ids, targets
from nucscale.train._augment import augment, colour, crop_scaled, flip_rotate, hed_jitter


def _pair(dsb2018: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    img = np.asarray(Image.open(dsb2018 / f"{prefix}_image.png").convert("RGB"))
    lab = np.asarray(Image.open(dsb2018 / f"{prefix}_labels.png")).astype(np.int32)
    return img, lab


def test_targets_from_instances() -> None:
    lab = np.zeros((10, 12), np.int32)
    lab[2:6, 2:6] = 1
    lab[2:6, 6:10] = 2  # touching
    fg, bd = targets(lab)
    assert fg.sum() == 32
    assert bd[3, 5] == 1  # both sides of the contact are boundary
    assert bd[3, 6] == 1
    assert bd[3, 3] == 0  # interior
    assert bd[lab == 0].sum() == 0


def test_flip_moves_targets_with_image(dsb2018: Path) -> None:
    img, lab = _pair(dsb2018, "0a849e0eb15f")
    rng = np.random.default_rng(3)
    for _ in range(8):
        seed = int(rng.integers(1 << 30))
        a_img, a_lab = flip_rotate(img, lab, np.random.default_rng(seed))
        # the same geometric transform applied to the targets of the original labels
        ref = targets(lab)
        b = flip_rotate(np.moveaxis(ref, 0, -1), lab, np.random.default_rng(seed))[0]
        np.testing.assert_array_equal(np.moveaxis(b, -1, 0), targets(a_lab))
        # labels still sit on the nuclei: mean intensity inside beats outside (fluorescence)
        grey = a_img.mean(axis=-1)
        assert grey[a_lab > 0].mean() > grey[a_lab == 0].mean() + 20


def test_horizontal_flip_exactly() -> None:
    img = np.zeros((8, 8, 3), np.uint8)
    lab = np.zeros((8, 8), np.int32)
    img[1:3, 0:2] = 200
    lab[1:3, 0:2] = 1
    # find a seed whose transform is exactly a horizontal flip (no v-flip, k = 0)
    for seed in range(200):
        rng = np.random.default_rng(seed)
        h, v, k = rng.random() < 0.5, rng.random() < 0.5, int(rng.integers(4))
        if h and not v and k == 0:
            break
    out_img, out_lab = flip_rotate(img, lab, np.random.default_rng(seed))
    np.testing.assert_array_equal(out_lab, lab[:, ::-1])
    np.testing.assert_array_equal(out_img, img[:, ::-1])
    np.testing.assert_array_equal(targets(out_lab), targets(lab)[:, :, ::-1])


def test_scaled_crop_keeps_alignment(dsb2018: Path) -> None:
    img, lab = _pair(dsb2018, "3c4c675825f7")  # H&E: nuclei darker than background
    for seed in range(4):
        c_img, c_lab = crop_scaled(img, lab, 96, np.random.default_rng(seed))
        assert c_img.shape == (96, 96, 3)
        assert c_lab.shape == (96, 96)
        assert set(np.unique(c_lab)) <= set(np.unique(lab))
        if (c_lab > 0).sum() > 50 and (c_lab == 0).sum() > 50:
            grey = c_img.mean(axis=-1)
            assert grey[c_lab > 0].mean() < grey[c_lab == 0].mean()


def test_colour_and_full_augment_shapes(dsb2018: Path) -> None:
    img, lab = _pair(dsb2018, "3c4c675825f7")
    rng = np.random.default_rng(0)
    out = hed_jitter(img[:64, :64], rng)
    assert out.dtype == np.uint8
    assert out.shape == (64, 64, 3)
    assert np.abs(out.astype(int) - img[:64, :64]).mean() < 40
    assert colour(img[:64, :64], "brightfield_he", rng).dtype == np.uint8
    a_img, a_lab = augment(img, lab, "brightfield_he", 64, np.random.default_rng(1))
    b_img, b_lab = augment(img, lab, "brightfield_he", 64, np.random.default_rng(1))
    np.testing.assert_array_equal(a_img, b_img)  # seeded: deterministic
    np.testing.assert_array_equal(a_lab, b_lab)


def test_split_is_per_modality_and_deterministic(dsb2018: Path) -> None:
    modality = list_ids(dsb2018)
    train, held = split_ids(modality)
    assert not set(train) & set(held)
    assert len(train) + len(held) == 49
    held_bf = [i for i in held if modality[i].startswith("brightfield")]
    assert len(held_bf) >= 2
    assert 0.15 <= len(held) / 49 <= 0.25
    shuffled = dict(reversed(list(modality.items())))
    assert split_ids(shuffled) == (train, held)
