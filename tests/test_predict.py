"""`python -m vicokd_jax.predict`: videos in, action out, with the jax.export predictor and with ONNX Runtime."""
import json
import re
import subprocess
import sys

import numpy as np
import pytest

import vicokd_jax as vk
from vicokd_jax import predict
from vicokd_jax.data import datasets, pipeline


def write_video(path, frames: np.ndarray, rate: int = 10, lossless: bool = True):
    """`frames [T, H, W, 3]` uint8 as a video file: lossless (PNG frames in an .avi/.mkv) unless `lossless` is
    False (H.264 in an .mp4)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("png" if lossless else "libx264", rate=rate)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "rgb24" if lossless else "yuv420p"
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def setting(default_student_export):
    """(cfg, export dir with ONNX files if the edge extra is installed, the first SynthMV test examples)."""
    cfg, out = default_student_export
    source = datasets.make_source(cfg, cfg.data.test_split)
    return cfg, out, [source[i] for i in range(2)]


def test_clips_are_sampled_and_cropped_as_the_evaluation_pipeline_does(setting, tmp_path):
    """Longer, larger, non-square videos (each frame of a SynthMV clip shown 3 times, upscaled 2x and padded to
    a wider frame) give exactly the pipeline's evaluation input of the same example shown that way."""
    cfg, out, examples = setting
    example = examples[0]
    views = [v for v in range(cfg.data.num_views) if example["view_mask"][v]]
    long = np.repeat(np.repeat(np.repeat(example["rgb"], 3, axis=1), 2, axis=2), 2, axis=3)  # [V, 3T, 2H, 2W, 3]
    padded = np.pad(long, ((0, 0), (0, 0), (0, 0), (8, 8), (0, 0)))  # wider than high: the centre is cropped
    paths = [str(write_video(tmp_path / f"view{v}.avi", padded[v])) if v in views else predict.ABSENT
             for v in range(cfg.data.num_views)]
    spec = vk.export.load(out).input_spec
    batch = predict.load_clip(paths, spec)
    reference_example = {**example, "rgb": padded, "human_score": np.repeat(example["human_score"], 3, axis=1)}
    reference_example.pop("skeleton", None)
    reference_example.pop("frame_labels", None)
    eval_cfg = datasets.pipeline_config(cfg, False, 1)
    reference = pipeline.transform_example(reference_example, eval_cfg, None)
    np.testing.assert_array_equal(batch["view_mask"][0], example["view_mask"])
    np.testing.assert_array_equal(batch["rgb"][0][views], reference["rgb"][views])


def test_the_cli_prints_a_table_and_json_with_both_backends(setting, tmp_path, capsys):
    pytest.importorskip("onnxruntime", reason="the edge extra (requirements-edge.txt) is not installed")
    cfg, out, examples = setting
    example = examples[1]
    paths = [str(write_video(tmp_path / f"v{v}.mp4", example["rgb"][v], lossless=False))
             for v in range(cfg.data.num_views)]
    assert predict.main(["--export", str(out), *paths, "--top-k", "3"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["rank", "class", "softmax"] and len(table) == 4
    results = {}
    for backend_flags in ([], ["--onnx"], ["--onnx", "--int8"]):
        assert predict.main(["--export", str(out), *paths, "--json", "--per-view", *backend_flags]) == 0
        result = json.loads(capsys.readouterr().out)
        results[result["backend"]] = result
        assert [e["rank"] for e in result["top_k"]] == [1, 2, 3, 4, 5]
        assert [v["view"] for v in result["views"]] == [1, 2, 3, 4]
        scores = [e["score"] for e in result["top_k"]]
        assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1 + 1e-6
    jax_top, onnx_top = results["jax"]["top_k"], results["onnx"]["top_k"]
    assert [e["index"] for e in jax_top] == [e["index"] for e in onnx_top]
    np.testing.assert_allclose([e["score"] for e in jax_top], [e["score"] for e in onnx_top], atol=1e-5)
    assert results["jax"]["top_k"][0]["class"] == datasets.class_names(cfg)[jax_top[0]["index"]]


def test_onnx_predict_runs_without_jax(setting, tmp_path):
    pytest.importorskip("onnxruntime", reason="the edge extra (requirements-edge.txt) is not installed")
    cfg, out, examples = setting
    paths = [str(write_video(tmp_path / f"v{v}.mp4", examples[0]["rgb"][v], lossless=False)) for v in range(2)]
    code = ("import sys, runpy\n"
            f"sys.argv = ['predict', '--export', {str(out)!r}, *{paths!r}, '--onnx', '--json']\n"
            "try:\n"
            "    runpy.run_module('vicokd_jax.predict', run_name='__main__')\n"
            "except SystemExit as e:\n"
            "    assert e.code == 0, e.code\n"
            "jax_modules = [m for m in sys.modules if m == 'jax' or m.startswith(('jax.', 'jaxlib', 'flax'))]\n"
            "assert not jax_modules, jax_modules\n")
    out_ = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out_.returncode == 0, out_.stderr[-3000:]
    result = json.loads(out_.stdout)
    assert result["backend"] == "onnx" and result["videos"] == paths and len(result["top_k"]) == 5


def test_bad_videos_are_named(setting, tmp_path, capsys):
    cfg, out, examples = setting
    good = str(write_video(tmp_path / "good.mp4", examples[0]["rgb"][0], lossless=False))
    short = str(write_video(tmp_path / "short.mp4", examples[0]["rgb"][0][:4], rate=1, lossless=False))
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all")
    cases = [
        ([str(tmp_path / "missing.mp4")], r"missing\.mp4: no such video file \(view 1\)"),
        ([good, str(junk)], r"junk\.mp4: cannot be read as a video \(view 2\)"),
        ([good] * 5, r"5 videos given but the export has 4 views"),
        ([good, short], r"differ in length by more than 1\.0 s: .*good\.mp4: 1\.60 s, .*short\.mp4: 4\.00 s"),
        ([predict.ABSENT, predict.ABSENT], r"no video given"),
    ]
    for videos, message in cases:
        assert predict.main(["--export", str(out), *videos]) == 1
        assert re.search(message, capsys.readouterr().err), message
    assert predict.main(["--export", str(tmp_path / "nowhere"), good]) == 1
    assert f"export directory {tmp_path / 'nowhere'} does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        predict.main(["--export", str(out), good, "--int8"])  # --int8 without --onnx
    assert "--int8 needs --onnx" in capsys.readouterr().err
