"""Small datasets in the real on-disk formats, generated locally (no download).

Images show coloured shapes (square / circle / triangle) on a textured background. Each class has
its own shape and colour family, so a model can learn them in minutes on a CPU, and the
annotations are exact (polygons rasterised with the same geometry as the images).

* COCO instances: ``<root>/small_coco/{train,val}/*.jpg`` + ``annotations/instances_{train,val}.json``
  (polygon segmentations, bbox, area, iscrowd).
* ADE20K: ``<root>/small_ade/images/{training,validation}/*.jpg`` +
  ``annotations/{training,validation}/*.png`` (0 = background, 1..3 = shape classes, all four
  learned: ``SEG_CLASSES``). Here every shape takes a colour drawn from one shared palette, so
  only the shape tells the classes apart, and the maps overlap shapes' borders and textures: the
  demo's mIoU is a real number that rises with training, not 100 after a few steps.
* ImageNet: ``<root>/small_imagenet/{train,val}/<wnid>/*.JPEG`` + ``meta/{train,val}.txt``.
"""
import json
import math
import os
import os.path as osp
from typing import Dict, List, Tuple

import numpy as np
from PIL import Image, ImageDraw

__all__ = ['CLASSES', 'SEG_CLASSES', 'make_small_coco', 'make_small_ade20k',
           'make_small_imagenet', 'make_all']

CLASSES = ('square', 'circle', 'triangle')
SEG_CLASSES = ('background', ) + CLASSES
_BASE_COLOURS = np.array([[220, 40, 40], [40, 200, 60], [50, 70, 230]], dtype=np.float32)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth grey gradient plus noise, different for every image."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, 2 * math.pi)
    grad = (np.cos(angle) * xx / w + np.sin(angle) * yy / h)
    base = rng.uniform(90, 160) + 40 * grad
    img = base[..., None] + rng.normal(0, 12, size=(h, w, 3))
    return np.clip(img, 0, 255)


def _polygon(rng: np.random.Generator, cls: int, cx: float, cy: float,
             r: float) -> List[Tuple[float, float]]:
    if cls == 0:  # axis-aligned square
        return [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    if cls == 1:  # circle as a 24-gon
        return [(cx + r * math.cos(2 * math.pi * i / 24), cy + r * math.sin(2 * math.pi * i / 24))
                for i in range(24)]
    rot = rng.uniform(0, 2 * math.pi / 3)  # triangle, random rotation
    return [(cx + r * math.cos(rot + 2 * math.pi * i / 3), cy + r * math.sin(rot + 2 * math.pi * i / 3))
            for i in range(3)]


def _sample_scene(rng, h, w, max_objects, min_size, max_size):
    """Non-overlapping objects: list of (class, polygon)."""
    objects, boxes = [], []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        for _attempt in range(20):
            r = rng.uniform(min_size, max_size) / 2
            cx, cy = rng.uniform(r + 1, w - r - 1), rng.uniform(r + 1, h - r - 1)
            box = (cx - r, cy - r, cx + r, cy + r)
            if all(box[2] < b[0] - 2 or box[0] > b[2] + 2 or box[3] < b[1] - 2 or box[1] > b[3] + 2
                   for b in boxes):
                cls = int(rng.integers(0, len(CLASSES)))
                objects.append((cls, _polygon(rng, cls, cx, cy, r)))
                boxes.append(box)
                break
    return objects


def _render(rng, h, w, objects, colour_by_class=True):
    """Image and label map; ``colour_by_class=False`` draws every shape in a colour of the
    shared palette (the class is then in the shape only)."""
    img = Image.fromarray(_background(rng, h, w).astype(np.uint8))
    label = Image.new('L', (w, h), 0)
    draw, draw_label = ImageDraw.Draw(img), ImageDraw.Draw(label)
    for cls, poly in objects:
        base = _BASE_COLOURS[cls if colour_by_class else int(rng.integers(0, len(CLASSES)))]
        colour = np.clip(base + rng.normal(0, 18, 3), 0, 255).astype(int)
        draw.polygon(poly, fill=tuple(int(c) for c in colour))
        draw_label.polygon(poly, fill=cls + 1)
    return img, np.array(label)


def make_small_coco(root: str, num_train: int = 64, num_val: int = 16, size: Tuple[int, int] = (128, 160),
                    seed: int = 0) -> str:
    """COCO-format instance segmentation set. Returns its folder."""
    out = osp.join(root, 'small_coco')
    rng = np.random.default_rng(seed)
    h, w = size
    os.makedirs(osp.join(out, 'annotations'), exist_ok=True)
    for split, count in (('train', num_train), ('val', num_val)):
        os.makedirs(osp.join(out, split), exist_ok=True)
        images, annotations = [], []
        for i in range(count):
            objects = _sample_scene(rng, h, w, 3, min(h, w) * 0.2, min(h, w) * 0.45)
            img, _ = _render(rng, h, w, objects)
            name = f'{split}_{i:05d}.jpg'
            img.save(osp.join(out, split, name), quality=95)
            images.append(dict(id=i + 1, file_name=name, width=w, height=h))
            for cls, poly in objects:
                xs, ys = [p[0] for p in poly], [p[1] for p in poly]
                x0, y0, x1, y1 = max(min(xs), 0), max(min(ys), 0), min(max(xs), w), min(max(ys), h)
                # shoelace area of the polygon
                area = 0.5 * abs(sum(xs[j] * ys[j - 1] - xs[j - 1] * ys[j] for j in range(len(xs))))
                annotations.append(dict(
                    id=len(annotations) + 1, image_id=i + 1, category_id=cls + 1,
                    segmentation=[[round(c, 2) for p in poly for c in p]],
                    area=round(area, 2), bbox=[round(x0, 2), round(y0, 2), round(x1 - x0, 2),
                                               round(y1 - y0, 2)], iscrowd=0))
        coco = dict(images=images, annotations=annotations,
                    categories=[dict(id=i + 1, name=n, supercategory='shape')
                                for i, n in enumerate(CLASSES)])
        with open(osp.join(out, 'annotations', f'instances_{split}.json'), 'w') as f:
            json.dump(coco, f)
    return out


def make_small_ade20k(root: str, num_train: int = 32, num_val: int = 8, size: Tuple[int, int] = (128, 160),
                      seed: int = 1) -> str:
    """ADE20K-format semantic segmentation set. Returns its folder."""
    out = osp.join(root, 'small_ade')
    rng = np.random.default_rng(seed)
    h, w = size
    for split, folder, count in (('train', 'training', num_train), ('val', 'validation', num_val)):
        os.makedirs(osp.join(out, 'images', folder), exist_ok=True)
        os.makedirs(osp.join(out, 'annotations', folder), exist_ok=True)
        for i in range(count):
            objects = _sample_scene(rng, h, w, 4, min(h, w) * 0.2, min(h, w) * 0.5)
            img, label = _render(rng, h, w, objects, colour_by_class=False)
            name = f'ADE_{split}_{i:08d}'
            img.save(osp.join(out, 'images', folder, name + '.jpg'), quality=95)
            Image.fromarray(label).save(osp.join(out, 'annotations', folder, name + '.png'))
    return out


def make_small_imagenet(root: str, per_class_train: int = 16, per_class_val: int = 4, size: int = 64,
                        seed: int = 2) -> str:
    """ImageNet-format classification set, one shape per image. Returns its folder."""
    out = osp.join(root, 'small_imagenet')
    rng = np.random.default_rng(seed)
    os.makedirs(osp.join(out, 'meta'), exist_ok=True)
    for split, count in (('train', per_class_train), ('val', per_class_val)):
        lines = []
        for cls in range(len(CLASSES)):
            wnid = f'n{cls:08d}'
            os.makedirs(osp.join(out, split, wnid), exist_ok=True)
            for i in range(count):
                r = rng.uniform(size * 0.2, size * 0.4)
                cx, cy = rng.uniform(r + 1, size - r - 1, 2)
                img, _ = _render(rng, size, size, [(cls, _polygon(rng, cls, cx, cy, r))])
                rel = f'{wnid}/{split}_{cls}_{i:04d}.JPEG'
                img.save(osp.join(out, split, rel), quality=95)
                lines.append(f'{rel} {cls}')
        with open(osp.join(out, 'meta', f'{split}.txt'), 'w') as f:
            f.write('\n'.join(lines) + '\n')
    return out


def make_all(root: str) -> Dict[str, str]:
    return dict(coco=make_small_coco(root), ade20k=make_small_ade20k(root),
                imagenet=make_small_imagenet(root))
