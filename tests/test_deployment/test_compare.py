"""The detection matcher (mmvit_ext/deployment/compare.py) on hand-made detections: what passes
(the same detections, the score cut, an NMS near-tie swap) and what fails."""
import numpy as np
import pytest

from mmvit_ext.deployment.compare import SCORE_GAP, match_detections

A = [0., 0., 10., 10.]
B = [2., 0., 12., 10.]  # IoU with A: 80 / 120 = 0.67, above Mask R-CNN's NMS threshold 0.5
FAR = [50., 50., 60., 60.]
NMS_IOU = 0.5


def _dets(*rows, masks=None):
    """rows of (box, score, label) -> the dict match_detections reads."""
    boxes, scores, labels = zip(*rows) if rows else ((), (), ())
    return dict(bboxes=np.array(boxes, dtype=np.float32).reshape(-1, 4),
                scores=np.array(scores, dtype=np.float32),
                labels=np.array(labels, dtype=np.int64), masks=masks)


def test_the_same_detections_match():
    ref = _dets((A, 0.9, 1), (FAR, 0.4, 2))
    m = match_detections(_dets((FAR, 0.4, 2), (A, 0.9, 1)), ref, 0.05, 100, NMS_IOU)
    assert m['ok'] and m['matched'] == 2 and m['missing'] == m['extra'] == 0, m


def test_a_swap_at_an_nms_near_tie_passes_only_given_the_nms_threshold():
    """PyTorch kept A, the other runtime B: two boxes of one label that suppress each other,
    scores tied to the 4th digit (the SG-Former case: label 0, score 0.1006, at 192x256)."""
    ref = _dets((FAR, 0.8, 1), (A, 0.1006, 0))
    got = _dets((FAR, 0.8, 1), (B, 0.1005, 0))
    m = match_detections(got, ref, 0.05, 100, NMS_IOU)
    assert m['ok'] and m['nms_swaps'] == 1 and m['at_cut'] == 0, m
    assert (m['matched'], m['missing'], m['extra']) == (1, 1, 1), m
    strict = match_detections(got, ref, 0.05, 100)
    assert not strict['ok'] and strict['nms_swaps'] == 0, strict
    assert sorted(strict['failing']) == [('extra', pytest.approx(0.1005), 0),
                                         ('missing', pytest.approx(0.1006), 0)], strict


@pytest.mark.parametrize('other', [
    (FAR, 0.1005, 0),  # no overlap: NMS would have kept both
    (B, 0.1005, 3),  # another label: per-class NMS never compares them
    (B, 0.1006 + 3 * SCORE_GAP, 0),  # not a near-tie
], ids=['apart', 'other-label', 'score-gap'])
def test_a_missing_and_an_extra_detection_that_are_no_nms_swap_fail(other):
    ref = _dets((A, 0.1006, 0))
    m = match_detections(_dets(other), ref, 0.05, 100, NMS_IOU)
    assert not m['ok'] and m['nms_swaps'] == 0 and len(m['failing']) == 2, m


def test_one_box_whose_mask_moved_is_no_swap():
    """The same box and score with a different mask is one detection that failed its mask check,
    not two boxes NMS chose between."""
    full = np.ones((1, 16, 16), dtype=bool)
    half = full.copy()
    half[0, :8] = False
    ref = _dets((A, 0.7, 0), masks=full)
    m = match_detections(_dets((A, 0.7, 0), masks=half), ref, 0.05, 100, NMS_IOU)
    assert not m['ok'] and m['nms_swaps'] == 0, m


def test_swaps_pair_one_to_one():
    """Two missing boxes cannot both be forgiven by one extra box."""
    ref = _dets((A, 0.3002, 0), (A, 0.3001, 0))
    m = match_detections(_dets((B, 0.3, 0)), ref, 0.05, 100, NMS_IOU)
    assert not m['ok'] and m['nms_swaps'] == 1 and m['failing'] == [
        ('missing', pytest.approx(0.3001), 0)], m


def test_detections_at_the_score_cut_pass_and_others_fail():
    ref = _dets((A, 0.9, 1), (FAR, 0.0505, 2))
    m = match_detections(_dets((A, 0.9, 1)), ref, 0.05, 100, NMS_IOU)
    assert m['ok'] and m['at_cut'] == 1 and m['missing'] == 1, m
    m = match_detections(_dets((A, 0.9, 1)), _dets((A, 0.9, 1), (FAR, 0.2, 2)), 0.05, 100,
                         NMS_IOU)
    assert not m['ok'] and m['failing'] == [('missing', pytest.approx(0.2), 2)], m
