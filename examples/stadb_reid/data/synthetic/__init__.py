"""Procedural synthetic person re-ID dataset, written in the Market-1501 layout.

The built-in dataset lets the trainer, its tests and the demo run offline. Each identity is a
cartoon pedestrian whose look is fixed by a handful of attributes:

* upper clothing: main and secondary colour, pattern (plain, horizontal or vertical stripes,
  checks, a chest logo that only shows from the front, colour block), stripe period, sleeves;
* lower clothing: trousers, shorts or skirt, colour, pattern (plain, side stripes, checks);
* skin tone, hair colour and length, shoe colour, a backpack or handbag, body build.

Colours come from a small palette (12 colours), so identities share colours and patterns and
differ only in their combination; no two identities have the same clothing combination.

Every camera has its own look, drawn once from the seed: colour cast, brightness and gamma,
a lighting ramp, blur, resolution loss, noise, JPEG quality, background (wall, floor, clutter),
typical person scale and horizontal position, the mix of front/back/side views, and how often
something occludes the person. Each image adds its own pose (stride, arm swing, mirror
image), jitter of scale and position, background clutter and occluders (poles, cars, another
person's clothes, in palette colours). Colour alone does not survive the camera casts, and the
background is shared by all identities seen by a camera, so a network has to learn which cues
identify a person. With the defaults, an untrained (randomly initialised) ResNet-50 and raw
pixels are at chance level (rank-1 2-3 % for 50 test identities), while a ResNet-18 trained
from scratch for 8 epochs on CPU reaches about 60 %.

The output is ``bounding_box_train/``, ``query/`` and ``bounding_box_test/`` with Market-1501
names ``PPPP_cCs1_FFFFFF_00.jpg`` (``PPPP`` from 0001; ``0000`` are distractor persons in the
gallery), plus ``synthetic.json`` holding the generator parameters and the list of files written.
For each test identity, the first image of every camera is a query and the others are gallery
images.

The package: :mod:`~stadb_reid.data.synthetic.identities` (attributes and cameras),
:mod:`~stadb_reid.data.synthetic.canvas`, :mod:`~stadb_reid.data.synthetic.person` and
:mod:`~stadb_reid.data.synthetic.rendering` (drawing), :mod:`~stadb_reid.data.synthetic.plan`
(parameters and image list), :mod:`~stadb_reid.data.synthetic.metadata` (``synthetic.json``) and
:mod:`~stadb_reid.data.synthetic.writing` (:func:`generate_synthetic_reid`).

Examples:
    >>> import shutil, tempfile
    >>> from pathlib import Path
    >>> from stadb_reid.data import build_dataset
    >>> root = Path(tempfile.mkdtemp()) / "synthetic"
    >>> ds = build_dataset("synthetic", root, num_train_identities=4, num_test_identities=2,
    ...                    num_cameras=2, images_per_identity_per_camera=2, num_distractors=1)
    >>> len(ds.train), len(ds.query), len(ds.gallery), ds.num_train_pids, ds.num_train_cams
    (16, 4, 5, 4, 2)
    >>> generate_synthetic_reid(root, num_train_identities=4, num_test_identities=2, num_cameras=2,
    ...                         images_per_identity_per_camera=2, num_distractors=1) == root  # reused
    True
    >>> shutil.rmtree(root.parent)
"""

from stadb_reid.data.synthetic.rendering import render_person
from stadb_reid.data.synthetic.writing import generate_synthetic_reid

__all__ = ["generate_synthetic_reid", "render_person"]
