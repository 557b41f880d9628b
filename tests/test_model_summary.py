"""`tools.model_summary`: parameter counts and XLA FLOPs of the presets, checked against hand arithmetic."""
import pytest

from tools import model_summary


@pytest.fixture(scope="module")
def vit_b16_rows():
    return {row["model"]: row for row in model_summary.summarize("vit_b16", batch=1, views=4, num_classes=400)}


def test_vit_b16_encoder_has_the_published_parameter_count(vit_b16_rows):
    # VideoMAE / ViT-B/16 at 16 x 224^2: ~86-87 M parameters.
    encoder = vit_b16_rows["student (shared)"]["encoder"]
    assert 86_000_000 <= encoder <= 87_000_000
    shared = vit_b16_rows["student (shared)"]["params"]
    per_view = vit_b16_rows["student (per-view)"]["params"]
    assert encoder < shared < encoder * 1.05  # adapter + heads are small
    assert per_view - shared == 3 * encoder  # three more encoder copies for V=4


def test_vit_b16_flops_match_hand_count(vit_b16_rows):
    tokens, width, depth = 8 * 196, 768, 12
    per_block = 24 * tokens * width**2 + 4 * tokens**2 * width  # projections + MLP + attention, 2 FLOPs per MAC
    patch_embed = 2 * tokens * (2 * 16 * 16 * 3) * width
    per_clip = depth * per_block + patch_embed
    student = vit_b16_rows["student (shared)"]["gflops"] * 1e9 / 4
    assert student == pytest.approx(per_clip, rel=0.03)
    # Per-view weights change parameters, not compute.
    assert vit_b16_rows["student (per-view)"]["gflops"] == pytest.approx(vit_b16_rows["student (shared)"]["gflops"],
                                                                         rel=1e-3)


def test_cli_prints_every_model_of_a_preset(capsys):
    assert model_summary.main(["--presets", "micro", "--views", "3"]) == 0
    out = capsys.readouterr().out
    for label in ("teacher (skeleton)", "teacher (skeleton+rgb)", "student (shared)", "student (per-view)"):
        assert f"micro     {label}" in out
