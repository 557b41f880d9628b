"""SynthMV's output is pinned bit for bit: every array of examples across splits, layouts and knobs.

`PINNED` holds v1's scene (its room, cameras, limbs and noise, passed explicitly): those digests were computed
from the rendering code before it was vectorised, so they check that the renderer still draws v1 exactly.
`PINNED_DEFAULTS` holds the current defaults. A speed-up (or any refactor) must leave every pixel, joint, score,
label and audio window exactly as it was; a change meant to alter the benchmark's data has to update the
defaults' digests (and say so: results measured on the old data no longer compare).
"""
import hashlib

import numpy as np
import pytest

from vicokd_jax.data.synthetic import SynthConfig, SynthMV

# v1's scene: a 4x4 m room, 62-degree lenses aimed 0.45 x room_half off-centre from 2.6 m, 0.1 m limbs, noise 3.
V1_SCENE = dict(room_half=2.0, fov_deg=62.0, aim_offset=0.45, camera_height=2.6, limb_radius=0.1, noise_std=3.0)
# name -> (split, SynthMV keyword arguments): examples of both splits (and validation), single- and multi-label,
# both overlaps, with sound, non-default image size, frame count and view count, with and without pillars.
CASES = {
    "default": ("train", {}),
    "test_split": ("test", {}),
    "multi_label": ("test", {"multi_label": True}),
    "full_overlap": ("train", {"config": {"overlap": "full"}}),
    "audio": ("train", {"audio": True}),
    "image_size_48": ("test", {"image_size": 48}),
    "three_views_occluders": ("train", {"num_views": 3, "config": {"occluders": 2}}),
    "five_views_full_occluders": ("test", {"num_views": 5, "multi_label": True,
                                           "config": {"overlap": "full", "occluders": 3}}),
    "eight_frames_validation": ("validation", {"num_frames": 8, "image_size": 24, "seed": 5}),
}
EXAMPLES = [(name, index) for name in CASES for index in (0, 3, 6)]


def example(name: str, index: int, scene: dict | None = None) -> dict:
    """Example `index` of case `name`, its config on top of `scene` (default: v1's)."""
    split, kwargs = CASES[name]
    scene = V1_SCENE if scene is None else scene
    return SynthMV(split, 8, **{**kwargs, "config": SynthConfig(**{**scene, **kwargs.get("config", {})})})[index]


def digests(e: dict) -> dict:
    """key -> the first 16 hex digits of sha256(dtype, shape, bytes) of that value, keys sorted."""
    out = {}
    for key in sorted(e):
        a = np.ascontiguousarray(np.asarray(e[key]))
        out[key] = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode() + a.tobytes()).hexdigest()[:16]
    return out


PINNED = {
    ("default", 0): {
        "frame_labels": "abef7c7295933aba", "human_score": "1867542045f28b9c", "id": "e795a88f4be8c1b8",
        "label": "4d431915a6b45084", "rgb": "28894d8ac289e7ea", "skeleton": "9536bf7235fa04dd",
        "view_mask": "a4f6759e64c7974c"},
    ("default", 3): {
        "frame_labels": "ca0dd4c684c4a8df", "human_score": "d9e4a27b2dd28b03", "id": "76d03d8c75f69733",
        "label": "f54e9bc2ff412fd4", "rgb": "36baaedc9031a412", "skeleton": "6ab5b2a7b6634989",
        "view_mask": "a4f6759e64c7974c"},
    ("default", 6): {
        "frame_labels": "b8f0c234d3189a66", "human_score": "7a92f46d66be9ca0", "id": "4e49b812edc48882",
        "label": "add5e6240be7f28e", "rgb": "8f965c70af572003", "skeleton": "5c68df983a0bad17",
        "view_mask": "a4f6759e64c7974c"},
    ("test_split", 0): {
        "frame_labels": "f31fe20601dc9a6d", "human_score": "a881ccc140f48bff", "id": "16bd30093fce206b",
        "label": "add5e6240be7f28e", "rgb": "be4ce7b906658f4a", "skeleton": "5f84c5bcdfb732a4",
        "view_mask": "a4f6759e64c7974c"},
    ("test_split", 3): {
        "frame_labels": "8c0c4d021f623c5d", "human_score": "4d7b13dceff18624", "id": "f34e8375ce7edbae",
        "label": "577da2db985c4719", "rgb": "7a298d6f45a7f41b", "skeleton": "6215a390df1623de",
        "view_mask": "a4f6759e64c7974c"},
    ("test_split", 6): {
        "frame_labels": "70b950fbe6ef27b3", "human_score": "8cc2789969667f08", "id": "b46be7fbf96167b3",
        "label": "4d431915a6b45084", "rgb": "22748d4b079bcc91", "skeleton": "cbc9cfa95a0cbd5d",
        "view_mask": "a4f6759e64c7974c"},
    ("multi_label", 0): {
        "frame_labels": "43c3fa7327e7a5fd", "human_score": "ba76ae42a9b0342e", "id": "16bd30093fce206b",
        "labels": "8e34d0f0ff9557a7", "rgb": "7dd7c6d75ff9e03b", "skeleton": "a6b181892e35220c",
        "view_mask": "a4f6759e64c7974c"},
    ("multi_label", 3): {
        "frame_labels": "1f6197a5be1bf59a", "human_score": "dfcb6d1a41e832b3", "id": "f34e8375ce7edbae",
        "labels": "838a53d555edf7ef", "rgb": "52f3e304e020b78f", "skeleton": "5858082657419b06",
        "view_mask": "a4f6759e64c7974c"},
    ("multi_label", 6): {
        "frame_labels": "d7abca9d23732d88", "human_score": "33f8ac2e8ff19f37", "id": "b46be7fbf96167b3",
        "labels": "7437ec104128238d", "rgb": "6fe8abb43742f6a9", "skeleton": "940932e8712c2044",
        "view_mask": "a4f6759e64c7974c"},
    ("full_overlap", 0): {
        "frame_labels": "abef7c7295933aba", "human_score": "ab83f7b8124bae07", "id": "e795a88f4be8c1b8",
        "label": "4d431915a6b45084", "rgb": "0a9fe14d5afa06d5", "skeleton": "4bb912973e6d526c",
        "view_mask": "a4f6759e64c7974c"},
    ("full_overlap", 3): {
        "frame_labels": "ca0dd4c684c4a8df", "human_score": "7d0f7aeb78306a01", "id": "76d03d8c75f69733",
        "label": "f54e9bc2ff412fd4", "rgb": "262e397dfb014df3", "skeleton": "445ff25e72cf77a6",
        "view_mask": "a4f6759e64c7974c"},
    ("full_overlap", 6): {
        "frame_labels": "b8f0c234d3189a66", "human_score": "980b8f422b7e3e20", "id": "4e49b812edc48882",
        "label": "add5e6240be7f28e", "rgb": "9a31cdc50b16c0d7", "skeleton": "ddfaf1e0fdd5cd49",
        "view_mask": "a4f6759e64c7974c"},
    ("audio", 0): {
        "audio": "47ce4945fc5c39de", "audio_mask": "a4f6759e64c7974c", "frame_labels": "abef7c7295933aba",
        "human_score": "1867542045f28b9c", "id": "e795a88f4be8c1b8", "label": "4d431915a6b45084",
        "rgb": "28894d8ac289e7ea", "skeleton": "9536bf7235fa04dd", "view_mask": "a4f6759e64c7974c"},
    ("audio", 3): {
        "audio": "7991b0b07957eb98", "audio_mask": "a4f6759e64c7974c", "frame_labels": "ca0dd4c684c4a8df",
        "human_score": "d9e4a27b2dd28b03", "id": "76d03d8c75f69733", "label": "f54e9bc2ff412fd4",
        "rgb": "36baaedc9031a412", "skeleton": "6ab5b2a7b6634989", "view_mask": "a4f6759e64c7974c"},
    ("audio", 6): {
        "audio": "c30cadd27d28ab3f", "audio_mask": "a4f6759e64c7974c", "frame_labels": "b8f0c234d3189a66",
        "human_score": "7a92f46d66be9ca0", "id": "4e49b812edc48882", "label": "add5e6240be7f28e",
        "rgb": "8f965c70af572003", "skeleton": "5c68df983a0bad17", "view_mask": "a4f6759e64c7974c"},
    ("image_size_48", 0): {
        "frame_labels": "f31fe20601dc9a6d", "human_score": "d6f1ba7695968936", "id": "16bd30093fce206b",
        "label": "add5e6240be7f28e", "rgb": "71f7b08af54f152b", "skeleton": "552758808008ecbf",
        "view_mask": "a4f6759e64c7974c"},
    ("image_size_48", 3): {
        "frame_labels": "8c0c4d021f623c5d", "human_score": "a4d9058c3d3b1efd", "id": "f34e8375ce7edbae",
        "label": "577da2db985c4719", "rgb": "94dc71f20078e565", "skeleton": "f6c2cf18d000650f",
        "view_mask": "a4f6759e64c7974c"},
    ("image_size_48", 6): {
        "frame_labels": "70b950fbe6ef27b3", "human_score": "9876527a67053a40", "id": "b46be7fbf96167b3",
        "label": "4d431915a6b45084", "rgb": "5873db241e3b9596", "skeleton": "d15e12400816bea3",
        "view_mask": "a4f6759e64c7974c"},
    ("three_views_occluders", 0): {
        "frame_labels": "abef7c7295933aba", "human_score": "fb4dfdcf80f09040", "id": "e795a88f4be8c1b8",
        "label": "4d431915a6b45084", "rgb": "4dc2a65a86a45624", "skeleton": "d62ed366756a482d",
        "view_mask": "85a1049e5555f107"},
    ("three_views_occluders", 3): {
        "frame_labels": "ca0dd4c684c4a8df", "human_score": "5532fad7c8c09ced", "id": "76d03d8c75f69733",
        "label": "f54e9bc2ff412fd4", "rgb": "523ab6678a4d7e57", "skeleton": "a3f8fe72d7ecf2ad",
        "view_mask": "85a1049e5555f107"},
    ("three_views_occluders", 6): {
        "frame_labels": "b8f0c234d3189a66", "human_score": "ed7b566645a787bf", "id": "4e49b812edc48882",
        "label": "add5e6240be7f28e", "rgb": "7b29229c0bcabac1", "skeleton": "80c59907b4ecca9d",
        "view_mask": "85a1049e5555f107"},
    ("five_views_full_occluders", 0): {
        "frame_labels": "43c3fa7327e7a5fd", "human_score": "af842fcb45d5c80c", "id": "16bd30093fce206b",
        "labels": "8e34d0f0ff9557a7", "rgb": "30dca92a8a9be332", "skeleton": "f664d98f63760438",
        "view_mask": "e0d179c5b2659ec9"},
    ("five_views_full_occluders", 3): {
        "frame_labels": "1f6197a5be1bf59a", "human_score": "d8a52da1dac40795", "id": "f34e8375ce7edbae",
        "labels": "838a53d555edf7ef", "rgb": "c984fc92d5f90bb9", "skeleton": "a77129a403e3b4dc",
        "view_mask": "e0d179c5b2659ec9"},
    ("five_views_full_occluders", 6): {
        "frame_labels": "d7abca9d23732d88", "human_score": "863afa30814a45aa", "id": "b46be7fbf96167b3",
        "labels": "7437ec104128238d", "rgb": "88ca10871f4b66d6", "skeleton": "45fd45dc88007244",
        "view_mask": "e0d179c5b2659ec9"},
    ("eight_frames_validation", 0): {
        "frame_labels": "3b0aec0ee9cea18e", "human_score": "369c639e8fea253a", "id": "0e4c40144a828cb1",
        "label": "f54e9bc2ff412fd4", "rgb": "4b68900ccbeb6626", "skeleton": "d91d1dbc130042c8",
        "view_mask": "a4f6759e64c7974c"},
    ("eight_frames_validation", 3): {
        "frame_labels": "9f36267cd50c9898", "human_score": "8b75ce02891e88d4", "id": "a74866fa8a90a4c2",
        "label": "c92cb102e821d834", "rgb": "9b2dc738277f9b27", "skeleton": "10927bbeccf4210a",
        "view_mask": "a4f6759e64c7974c"},
    ("eight_frames_validation", 6): {
        "frame_labels": "d505a93cb8bf3323", "human_score": "da347099c74355ab", "id": "65d6cdfed0f5bf4d",
        "label": "b30781574069af87", "rgb": "36a7c570e672cf4c", "skeleton": "8894604d7a53e5f0",
        "view_mask": "a4f6759e64c7974c"},
}


@pytest.mark.parametrize("name, index", EXAMPLES)
def test_every_array_is_the_pinned_one(name, index):
    got, want = digests(example(name, index)), PINNED[(name, index)]
    assert list(got) == list(want), f"{name}[{index}]: keys {list(got)} != pinned {list(want)}"
    changed = [key for key in want if got[key] != want[key]]
    assert not changed, f"{name}[{index}]: arrays {changed} differ from the pinned output"


def test_the_pins_cover_every_example():
    assert sorted(PINNED) == sorted(EXAMPLES)


# The current defaults (v2's scene), on the cases whose data it changes.
DEFAULT_CASES = [(name, index) for name in ("default", "test_split", "audio", "full_overlap", "three_views_occluders")
                 for index in (0, 3)]
PINNED_DEFAULTS = {
    ('default', 0): {
        "frame_labels": "abef7c7295933aba", "human_score": "186236f94af99422", "id": "e795a88f4be8c1b8",
        "label": "4d431915a6b45084", "rgb": "fef3890a27b89abf", "skeleton": "3bbdd161dad0aec1",
        "view_mask": "a4f6759e64c7974c"},
    ('default', 3): {
        "frame_labels": "ca0dd4c684c4a8df", "human_score": "c95d3f0d5efa44d0", "id": "76d03d8c75f69733",
        "label": "f54e9bc2ff412fd4", "rgb": "878f1e8f4b3b77a6", "skeleton": "ceb3eb2574ca570c",
        "view_mask": "a4f6759e64c7974c"},
    ('test_split', 0): {
        "frame_labels": "f31fe20601dc9a6d", "human_score": "d077873a98fa0e09", "id": "16bd30093fce206b",
        "label": "add5e6240be7f28e", "rgb": "4bf35252830f5164", "skeleton": "b9ba309aa13ed9b1",
        "view_mask": "a4f6759e64c7974c"},
    ('test_split', 3): {
        "frame_labels": "8c0c4d021f623c5d", "human_score": "cd8929ebae525b5f", "id": "f34e8375ce7edbae",
        "label": "577da2db985c4719", "rgb": "aa0c25663e6cdd5b", "skeleton": "0498ace069fde0a9",
        "view_mask": "a4f6759e64c7974c"},
    ('audio', 0): {
        "audio": "fd8748ab6a7e002d", "audio_mask": "a4f6759e64c7974c", "frame_labels": "abef7c7295933aba",
        "human_score": "186236f94af99422", "id": "e795a88f4be8c1b8", "label": "4d431915a6b45084",
        "rgb": "fef3890a27b89abf", "skeleton": "3bbdd161dad0aec1", "view_mask": "a4f6759e64c7974c"},
    ('audio', 3): {
        "audio": "9c2c2ae1ceec84b4", "audio_mask": "a4f6759e64c7974c", "frame_labels": "ca0dd4c684c4a8df",
        "human_score": "c95d3f0d5efa44d0", "id": "76d03d8c75f69733", "label": "f54e9bc2ff412fd4",
        "rgb": "878f1e8f4b3b77a6", "skeleton": "ceb3eb2574ca570c", "view_mask": "a4f6759e64c7974c"},
    ('full_overlap', 0): {
        "frame_labels": "abef7c7295933aba", "human_score": "ab83f7b8124bae07", "id": "e795a88f4be8c1b8",
        "label": "4d431915a6b45084", "rgb": "bbcd9803769a3832", "skeleton": "8a0be8b53885f2f8",
        "view_mask": "a4f6759e64c7974c"},
    ('full_overlap', 3): {
        "frame_labels": "ca0dd4c684c4a8df", "human_score": "e078bb275dec2f3e", "id": "76d03d8c75f69733",
        "label": "f54e9bc2ff412fd4", "rgb": "d2ff5d714cf3de11", "skeleton": "c1786f0f65885e87",
        "view_mask": "a4f6759e64c7974c"},
    ('three_views_occluders', 0): {
        "frame_labels": "abef7c7295933aba", "human_score": "53d7ed4f8d77a767", "id": "e795a88f4be8c1b8",
        "label": "4d431915a6b45084", "rgb": "51b620f9b1d1d11c", "skeleton": "3fadb41dcc557ffc",
        "view_mask": "85a1049e5555f107"},
    ('three_views_occluders', 3): {
        "frame_labels": "ca0dd4c684c4a8df", "human_score": "f573d5c2d375d6ea", "id": "76d03d8c75f69733",
        "label": "f54e9bc2ff412fd4", "rgb": "5efc5b8b14387141", "skeleton": "411e4810a1e93041",
        "view_mask": "85a1049e5555f107"},
}


@pytest.mark.parametrize("name, index", DEFAULT_CASES)
def test_the_defaults_are_the_pinned_ones(name, index):
    got, want = digests(example(name, index, scene={})), PINNED_DEFAULTS[(name, index)]
    changed = [key for key in want if got.get(key) != want[key]]
    assert list(got) == list(want) and not changed, f"{name}[{index}]: arrays {changed} differ from the pinned output"


def test_the_default_pins_cover_every_case():
    assert sorted(PINNED_DEFAULTS) == sorted(DEFAULT_CASES)
