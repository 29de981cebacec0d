"""train.paint: counterfactual no-tumour scans and balanced control paintings."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from brainmri import localisation as loc
from brainmri.classes import CLASSES, NO_TUMOUR
from brainmri.localisation import boxes_overlap as overlaps
from brainmri.intensity import landmarks
from train.paint import (CONTROL, IMPLANT, IMPLANT_CONTROL, LESION_OUT, PLAIN, Painter, grow_box, paste,
                         place_control, plan_epoch, soft_ellipse)

sys.path.insert(0, str(Path(__file__).parent))
import synthetic  # noqa: E402

NOTUMOR = CLASSES.index(NO_TUMOUR)


def crop_with_lesion(seed: int = 0, size: int = 96) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A synthetic head crop with a bright square lesion, and the lesion's box."""
    img = np.array(synthetic.scan(seed, size=size, lesion=False))
    box = (40, 30, 52, 44)
    img[box[1]:box[3], box[0]:box[2]] = 230
    return img, box


def test_grow_box_grows_by_a_share_of_the_side_and_clips():
    assert grow_box((10, 20, 30, 40), 0.05, 100) == (5, 15, 35, 45)
    assert grow_box((0, 1, 99, 100), 0.05, 100) == (0, 0, 100, 100)


def test_painter_paints_exactly_the_grown_box_and_removes_the_lesion():
    crop, box = crop_with_lesion()
    painter = Painter(crop[None], [box], grow=0.04, notumor=NOTUMOR)
    grown = painter.grown[0]
    assert grown == grow_box(box, 0.04, crop.shape[0])
    out, painted = painter(0, LESION_OUT, np.random.default_rng(0))
    assert painted == grown
    changed = out != crop
    inside = loc.box_mask(crop.shape, grown)
    assert changed.any() and not (changed & ~inside).any()          # nothing outside the box moves
    x0, y0, x1, y1 = box
    assert out[y0:y1, x0:x1].mean() < 160 < crop[y0:y1, x0:x1].mean()  # the bright lesion is gone


def test_control_box_is_in_the_head_away_from_the_tumour_and_keeps_its_size():
    crop, box = crop_with_lesion(3)
    head = loc.head_mask(crop)
    rng = np.random.default_rng(1)
    avoid = grow_box(box, 0.04, crop.shape[0])
    for _ in range(20):
        c = place_control(head, (0.1, 0.1, 0.25, 0.2), rng, avoid=avoid)
        assert c is not None and not overlaps(c, avoid)
        assert (c[2] - c[0], c[3] - c[1]) == (round(0.15 * 96), round(0.1 * 96))
        assert head[(c[1] + c[3]) // 2, (c[0] + c[2]) // 2]
    assert place_control(head, (0.0, 0.0, 1.0, 1.0), rng) is None   # too large: nothing fits


def test_painter_controls_avoid_the_tumour_and_are_reused():
    crop, box = crop_with_lesion(4)
    painter = Painter(crop[None], [box], notumor=NOTUMOR, pool=np.array([[0.2, 0.6, 0.35, 0.75]]), bank=1)
    out, c = painter(0, CONTROL, np.random.default_rng(0))
    assert c is not None and not overlaps(c, painter.grown[0])
    assert not ((out != crop) & ~loc.box_mask(crop.shape, c)).any()
    again, c2 = painter(0, CONTROL, np.random.default_rng(5))
    assert c2 == c and again is out                                   # the bank keeps one painting
    plain, none = painter(0, PLAIN, np.random.default_rng(0))
    assert none is None and np.array_equal(plain, crop)


def test_lesion_out_needs_a_box():
    crop, _ = crop_with_lesion()
    with pytest.raises(ValueError, match="no tumour box"):
        Painter(crop[None], [None], notumor=NOTUMOR)(0, LESION_OUT, np.random.default_rng(0))


def fake_split(seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = np.repeat([0, 1, 2, 3], [300, 200, 120, 250])
    boxed = (labels != NOTUMOR) & (rng.random(len(labels)) < 0.9)
    return labels, boxed


def test_plan_balances_labels_between_painted_and_unpainted():
    labels, boxed = fake_split()
    plan = plan_epoch(labels, boxed, NOTUMOR, 0.3, 0.6, np.random.default_rng(0), notumor_repeat=2)
    painted = plan.kind != PLAIN
    n_cf = round(0.3 * boxed.sum())
    assert (plan.kind == LESION_OUT).sum() == n_cf
    assert (plan.label[plan.kind == LESION_OUT] == NOTUMOR).all()
    assert len(plan) == len(labels) + (labels == NOTUMOR).sum() + n_cf
    for c in range(4):
        share_painted = (plan.label[painted] == c).mean()
        share_plain = (plan.label[~painted] == c).mean()
        assert abs(share_painted - share_plain) < 0.01, c
    # Tumour-class controls only on boxed scans (a control must not cover an unboxed tumour).
    controls = plan.index[(plan.kind == CONTROL) & (plan.label != NOTUMOR)]
    assert boxed[controls].all()
    # Every counterfactual comes from a boxed tumour scan.
    assert boxed[plan.index[plan.kind == LESION_OUT]].all()


def test_plan_is_deterministic_under_a_seed_and_refuses_impossible_balance():
    labels, boxed = fake_split()
    a = plan_epoch(labels, boxed, NOTUMOR, 0.3, 0.6, np.random.default_rng(7), notumor_repeat=2)
    b = plan_epoch(labels, boxed, NOTUMOR, 0.3, 0.6, np.random.default_rng(7), notumor_repeat=2)
    assert (a.index == b.index).all() and (a.kind == b.kind).all() and (a.label == b.label).all()
    with pytest.raises(ValueError, match="balancing needs"):
        plan_epoch(labels, boxed, NOTUMOR, 0.9, 0.2, np.random.default_rng(0))


def test_soft_ellipse_is_one_inside_zero_at_the_corners_and_in_range():
    a = soft_ellipse(20, 30)
    assert a.shape == (20, 30) and a.min() == 0 and a.max() == 1 and ((a >= 0) & (a <= 1)).all()
    assert a[10, 15] == 1 and a[0, 0] == a[0, -1] == a[-1, 0] == a[-1, -1] == 0


def test_paste_changes_only_the_target_box_in_the_hosts_look():
    donor, box = crop_with_lesion(0)
    host = (np.array(synthetic.scan(9, size=96, lesion=False)).astype(np.float64) * 0.6).astype(np.uint8)
    dst = (30, 50, 30 + box[2] - box[0], 50 + box[3] - box[1])
    out = paste(host, donor, box, dst)
    assert out.dtype == np.uint8 and out.shape == host.shape
    assert not ((out != host) & ~loc.box_mask(host.shape, dst)).any()     # nothing else moves
    cy, cx = (dst[1] + dst[3]) // 2, (dst[0] + dst[2]) // 2
    marks = landmarks(host)
    assert out[cy, cx] > max(host[cy, cx] + 20, marks[-2])               # the lesion came over,
    assert out[cy, cx] <= marks[-1] + 1                                   # as bright as the host's brightest
    with pytest.raises(ValueError, match="differ in size"):
        paste(host, donor, box, (0, 0, 5, 5))


def test_implants_carry_the_tumour_controls_a_healthy_patch_of_its_size():
    donor, box = crop_with_lesion(0)
    host = np.array(synthetic.scan(9, size=96, lesion=False))
    painter = Painter(np.stack([donor, host]), [box, None], grow=0.0, notumor=NOTUMOR)
    out, dst = painter(1, IMPLANT, np.random.default_rng(0), donor=0)
    assert dst == box                                                     # its own place fits the head
    assert not ((out != host) & ~loc.box_mask(host.shape, dst)).any()
    x0, y0, x1, y1 = dst
    w, h = x1 - x0, y1 - y0

    def core(img, b):                                                     # the box's inner half
        return img[b[1] + h // 4:b[3] - h // 4, b[0] + w // 4:b[2] - w // 4].astype(float)
    assert core(out, dst).mean() > core(host, dst).mean() + 15
    ctrl, cdst = painter(1, IMPLANT_CONTROL, np.random.default_rng(0), donor=0)
    assert (cdst[2] - cdst[0], cdst[3] - cdst[1]) == (w, h)
    assert core(ctrl, cdst).mean() < core(out, dst).mean() - 15           # no lesion in it
    again, _ = painter(1, IMPLANT_CONTROL, np.random.default_rng(0), donor=0)
    assert np.array_equal(again, ctrl)                                    # seeded
    with pytest.raises(ValueError, match="no tumour box"):
        painter(0, IMPLANT, np.random.default_rng(0), donor=1)


def test_plan_with_implants_adds_them_and_their_controls_and_keeps_the_rest():
    labels, boxed = fake_split()
    base = plan_epoch(labels, boxed, NOTUMOR, 0.3, 0.6, np.random.default_rng(3), notumor_repeat=2)
    plan = plan_epoch(labels, boxed, NOTUMOR, 0.3, 0.6, np.random.default_rng(3), notumor_repeat=2,
                      implant=0.5)
    n = round(0.5 * (labels == NOTUMOR).sum())
    imp, ctl = plan.kind == IMPLANT, plan.kind == IMPLANT_CONTROL
    assert imp.sum() == ctl.sum() == n and len(plan) == len(base) + 2 * n
    assert base.donor is None and (plan.donor[~(imp | ctl)] == -1).all()
    assert (labels[plan.index[imp | ctl]] == NOTUMOR).all()              # hosts: no-tumour scans
    donors = plan.donor[imp | ctl]
    assert boxed[donors].all() and (labels[donors] != NOTUMOR).all()      # donors: boxed tumours
    assert (plan.label[imp] == labels[plan.donor[imp]]).all() and (plan.label[ctl] == NOTUMOR).all()
    rest = ~(imp | ctl)
    for k in (PLAIN, LESION_OUT, CONTROL):                                # the other rows as before
        assert (plan.kind[rest] == k).sum() == (base.kind == k).sum()
    assert set(plan.counts(["g", "m", "n", "p"])) == {"plain", "lesion out", "control", "implant",
                                                       "implant control"}


def test_an_implant_row_is_guided_to_where_the_tumour_went_and_its_control_is_not():
    import torch
    from brainmri.models import ARCHS
    from brainmri.presets import TrainPreset
    from train.paint import Plan
    from train.train import painted_batch
    donor, box = crop_with_lesion(0)
    host = np.array(synthetic.scan(9, size=96, lesion=False))
    painter = Painter(np.stack([donor, host]), [box, None], grow=0.0, notumor=NOTUMOR)
    plan = Plan(np.array([1, 1]), np.array([IMPLANT, IMPLANT_CONTROL]), np.array([0, NOTUMOR]),
                np.array([0, 0]))
    preset = TrainPreset(eval=ARCHS["baseline"].preset(96))
    x, y, masks, guided = painted_batch(painter, plan, preset, None, {}, None, range(2),
                                        np.random.default_rng(0), torch.Generator().manual_seed(0))
    assert x.shape[0] == 2 and y.tolist() == [0, NOTUMOR] and guided.tolist() == [True, False]
    assert masks[0].sum() > 0 and masks[1].sum() == 0
