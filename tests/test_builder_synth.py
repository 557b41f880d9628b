"""The synth_mv TFDS builder and tools/prepare_data.py."""
import numpy as np
import pytest

from vicokd_jax.data import pipeline, schema
from vicokd_jax.data.builders.synth_mv import SynthMv, SynthMvConfig


def test_synth_mv_round_trip_through_array_record_and_pipeline(tmp_path):
    config = SynthMvConfig(name="tiny", num_train=6, num_test=3, num_frames=8, image_size=16, num_views=3)
    builder = SynthMv(config=config, data_dir=str(tmp_path), file_format="array_record")
    builder.download_and_prepare()
    sources = builder.as_data_source()
    assert len(sources["train"]) == 6 and len(sources["test"]) == 3
    generated = config.source("train")
    by_id = {generated[i]["id"]: generated[i] for i in range(6)}
    for i in range(6):
        stored = sources["train"][i]
        key = stored["id"].decode()
        schema.check_example(stored, key)
        for field in ("rgb", "skeleton", "human_score", "view_mask", "frame_labels"):
            np.testing.assert_array_equal(stored[field], by_id[key][field], err_msg=field)
        assert int(stored["label"]) == int(by_id[key]["label"])
    cfg = pipeline.PipelineConfig(batch_size=4, num_frames=8, shard_index=0, shard_count=1)
    batch = next(iter(pipeline.make_dataset(sources["train"], cfg)))
    assert batch["rgb"].shape == (4, 3, 8, 16, 16, 3) and batch["skeleton"].shape == (4, 3, 1, 8, 25, 3)
    assert batch["label"].dtype == np.int32 and batch["id"].dtype.kind == "U"


def test_prepare_data_lists_configs_and_rejects_bad_requests(capsys, tmp_path):
    from tools import prepare_data

    assert prepare_data.main(["synth_mv", "--list"]) == 0
    assert "partial_multilabel" in capsys.readouterr().out
    assert prepare_data.main(["synth_mv", "--config", "huge", "--data_dir", str(tmp_path)]) == 2
    assert "no config 'huge'" in capsys.readouterr().err
    assert prepare_data.main(["multisensor_home", "--config", "home1", "--data_dir", str(tmp_path)]) == 2
    assert "pass --manual_dir" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        prepare_data.main(["kinetics"])
