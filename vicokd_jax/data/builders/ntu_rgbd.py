"""TFDS builder for NTU RGB+D 60 / 120 as multi-view samples (ArrayRecord; builds and reads without TensorFlow).

    import tensorflow_datasets as tfds
    from vicokd_jax.data.builders.ntu_rgbd import NtuRgbd, missing_files

    print(missing_files("/data/ntu", "ntu60_xsub_skeleton"))     # [] when nothing the config needs is missing
    builder = NtuRgbd(config="ntu60_xsub_skeleton", data_dir="/data/tfds", file_format="array_record")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir="/data/ntu"))
    source = builder.as_data_source()["train"]                   # random access: source[i] -> example dict

Configs `{benchmark}_{modality}`: benchmark in ntu60_xsub, ntu60_xview, ntu120_xsub, ntu120_xset (see
`vicokd_jax.data.ntu.Benchmark`), modality `skeleton` or `skeleton_rgb` (RGB resized to 128x128). For another
RGB size pass your own config, e.g. `NtuRgbdConfig(name="ntu60_xsub_rgb64", benchmark="ntu60_xsub",
modality="skeleton_rgb", rgb_size=(64, 64))`.

Disk: a skeleton sample takes 3 * 2 * T * 25 * 3 * 4 bytes (~180 KB at T = 100), about 3.5 GB for NTU-60; raw
uint8 RGB at 128x128 adds 3 * T * 128 * 128 * 3 bytes (~15 MB at T = 100), hundreds of GB for the full dataset:
pick a small `rgb_size`. In xview every sample is written to both splits (different views kept).
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import itertools
import os
import pathlib

import tensorflow_datasets as tfds

from vicokd_jax.data import ntu, schema

MODALITIES = ("skeleton", "skeleton_rgb")

_INSTRUCTIONS = f"""
NTU RGB+D cannot be downloaded automatically: request it from the ROSE Lab
(https://rose1.ntu.edu.sg/dataset/actionRecognition/, academic non-commercial agreement), then put into
`manual_dir` (flat, or in these sub-folders, which are what the official zips extract to):

  manual_dir/{ntu.SKELETON_DIR}/SsssCcccPpppRrrrAaaa.skeleton   all configs
      NTU-60: nturgbd_skeletons_s001_to_s017.zip; NTU-120: also nturgbd_skeletons_s018_to_s032.zip
  manual_dir/{ntu.RGB_DIR}/SsssCcccPpppRrrrAaaa_rgb.avi          `*_skeleton_rgb` configs only
      nturgbd_rgb_s001.zip ... (one zip per setup)

`vicokd_jax.data.builders.ntu_rgbd.missing_files(manual_dir, config_name)` lists what a config still lacks.
Camera files on the authors' list of missing skeletons are left out (their view is masked), as are files
whose frames list no body.
"""

_CITATION = """
@inproceedings{shahroudy2016ntu,
  title={NTU RGB+D: A Large Scale Dataset for 3D Human Activity Analysis},
  author={Shahroudy, Amir and Liu, Jun and Ng, Tian-Tsong and Wang, Gang}, booktitle={CVPR}, year={2016}}
@article{liu2019ntu,
  title={NTU RGB+D 120: A Large-Scale Benchmark for 3D Human Activity Understanding},
  author={Liu, Jun and Shahroudy, Amir and Perez, Mauricio and Wang, Gang and Duan, Ling-Yu and Kot, Alex C.},
  journal={IEEE TPAMI}, year={2019}}
"""


@dataclasses.dataclass(eq=False)
class NtuRgbdConfig(tfds.core.BuilderConfig):
    """benchmark: a key of `ntu.BENCHMARKS`; modality: "skeleton" | "skeleton_rgb"; rgb_size: (H, W);
    max_bodies: person slots M kept per view (most active first, `ntu.assign_bodies`)."""

    benchmark: str = "ntu60_xsub"
    modality: str = "skeleton"
    rgb_size: tuple[int, int] = ntu.DEFAULT_RGB_SIZE
    max_bodies: int = 2

    def __post_init__(self):
        ntu.get_benchmark(self.benchmark)
        if self.modality not in MODALITIES:
            raise ValueError(f"config {self.name}: unknown modality {self.modality!r}; expected one of {MODALITIES}")

    @property
    def with_rgb(self) -> bool:
        return self.modality == "skeleton_rgb"


def _make_configs() -> list[NtuRgbdConfig]:
    configs = []
    for benchmark, modality in itertools.product(ntu.BENCHMARKS, MODALITIES):
        rgb = f", RGB {ntu.DEFAULT_RGB_SIZE[0]}x{ntu.DEFAULT_RGB_SIZE[1]}" if modality == "skeleton_rgb" else ""
        configs.append(NtuRgbdConfig(name=f"{benchmark}_{modality}", benchmark=benchmark, modality=modality,
                                     description=f"{benchmark}: 3-view samples, skeletons{rgb}"))
    return configs


class NtuRgbd(tfds.core.GeneratorBasedBuilder):
    """NTU RGB+D 60/120, one example per (setup, performer, replication, action) with its 3 camera views."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Multi-view samples (3 cameras), skeleton and optional resized RGB."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS
    BUILDER_CONFIGS = _make_configs()

    def __init__(self, *, num_workers: int | None = None, **kwargs):
        """num_workers: threads that read samples while building (default: CPU count, at most 8); video
        decoding releases the GIL, skeleton parsing mostly does not."""
        self._num_workers = num_workers or min(8, os.cpu_count() or 1)
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        config = self.builder_config
        benchmark = ntu.get_benchmark(config.benchmark)
        features = schema.tfds_features(num_views=ntu.NUM_CAMERAS, num_classes=benchmark.num_classes,
                                        skeleton=(config.max_bodies, ntu.NUM_JOINTS),
                                        rgb=tuple(config.rgb_size) if config.with_rgb else None,
                                        frame_labels=False)
        return tfds.core.DatasetInfo(builder=self, description=__doc__, features=features,
                                     homepage="https://rose1.ntu.edu.sg/dataset/actionRecognition/",
                                     citation=_CITATION)

    def _split_generators(self, dl_manager):
        config = self.builder_config
        manual_dir = pathlib.Path(dl_manager.manual_dir)
        benchmark = ntu.get_benchmark(config.benchmark)
        skeletons = {n: p for n, p in ntu.find_skeletons(manual_dir).items() if benchmark.includes(n)}
        if not skeletons:
            raise FileNotFoundError(f"no NTU RGB+D .skeleton files for {config.name} in {manual_dir}.\n"
                                    + _INSTRUCTIONS)
        videos = None
        if config.with_rgb:
            videos = ntu.find_videos(manual_dir)
            lacking = _missing_videos(skeletons, videos, benchmark)
            if lacking:
                raise FileNotFoundError(f"{config.name}: RGB videos missing in {manual_dir}: "
                                        + "; ".join(lacking[:5]) + (" ..." if len(lacking) > 5 else ""))
        return {split: self._generate_examples(skeletons, videos, split) for split in ntu.SPLITS}

    def _generate_examples(self, skeletons: dict, videos: dict | None, split: str):
        config = self.builder_config
        benchmark = ntu.get_benchmark(config.benchmark)
        exclude = ntu.published_missing(benchmark.variant)
        jobs = []
        for sample_id, cameras in ntu.group_views(skeletons).items():
            kept = benchmark.cameras(split, next(iter(cameras.values())))
            if not any(c in cameras for c in kept):
                continue
            files = {c: skeletons[n] for c, n in cameras.items()}
            rgb = None if videos is None else {c: videos[n] for c, n in cameras.items() if n in videos}
            jobs.append((sample_id, files, kept, rgb))

        def load(job):
            _, files, kept, rgb = job
            return ntu.load_sample(files, cameras=kept, rgb_files=rgb, rgb_size=tuple(config.rgb_size),
                                   max_bodies=config.max_bodies, exclude=exclude)

        for (sample_id, *_), example in zip(jobs, _bounded_map(load, jobs, self._num_workers)):
            if example is not None:  # every kept view missing: nothing to learn from
                yield sample_id, example


def _bounded_map(fn, items: list, workers: int):
    """Ordered `map(fn, items)` on a thread pool with at most 2 * workers results in flight (bounded memory)."""
    if workers <= 1:
        yield from map(fn, items)
        return
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        pending = [pool.submit(fn, item) for item in items[:2 * workers]]
        for item in items[2 * workers:]:
            yield pending.pop(0).result()
            pending.append(pool.submit(fn, item))
        for future in pending:
            yield future.result()


# ----------------------------------------------------------------------------------------------------------------
# What a config still lacks
# ----------------------------------------------------------------------------------------------------------------

def get_config(config_name: str) -> NtuRgbdConfig:
    """The builder config called `config_name` (ValueError listing the valid names otherwise)."""
    for config in NtuRgbd.BUILDER_CONFIGS:
        if config.name == config_name:
            return config
    raise ValueError(f"unknown NTU RGB+D config {config_name!r}; expected one of "
                     f"{[c.name for c in NtuRgbd.BUILDER_CONFIGS]}")


def missing_files(manual_dir: str | os.PathLike, config_name: str | NtuRgbdConfig) -> list[str]:
    """What `manual_dir` lacks for `config_name`, one human-readable line per problem ([] = ready to build).

    Checks: the folder exists; it holds `.skeleton` files; every setup of the release has some (the camera
    files of one setup cannot be listed without the full file list, so coverage is checked per setup); and,
    for `*_skeleton_rgb`, an `_rgb.avi` for every skeleton file (whole setups summarised on one line).
    """
    config = get_config(config_name) if isinstance(config_name, str) else config_name
    benchmark = ntu.get_benchmark(config.benchmark)
    root = pathlib.Path(manual_dir)
    if not root.is_dir():
        return [f"{root}: folder does not exist (put NTU RGB+D's {ntu.SKELETON_DIR}/ there)"]
    skeletons = {n: p for n, p in ntu.find_skeletons(root).items() if benchmark.includes(n)}
    if not skeletons:
        return [f"{root}: no .skeleton files for {config.name}, neither in {root / ntu.SKELETON_DIR} nor in {root} "
                f"(extract nturgbd_skeletons_s001_to_s017.zip there)"]
    problems = []
    absent = sorted(set(range(1, benchmark.num_setups + 1)) - {n.setup for n in skeletons})
    if absent:
        hint = (" (NTU-120 part 2: nturgbd_skeletons_s018_to_s032.zip)"
                if benchmark.variant == "ntu120" and any(s > 17 for s in absent) else "")
        problems.append(f"{root / ntu.SKELETON_DIR}: no .skeleton files for setups {_ranges(absent)} "
                        f"of {benchmark.variant} (setups 1-{benchmark.num_setups}){hint}")
    if config.with_rgb:
        problems += _missing_videos(skeletons, ntu.find_videos(root), benchmark, root / ntu.RGB_DIR)
    return problems


def _missing_videos(skeletons: dict, videos: dict, benchmark: ntu.Benchmark,
                    folder: pathlib.Path | str = ntu.RGB_DIR) -> list[str]:
    """One line per camera file lacking its video, or per setup when the whole setup lacks videos."""
    exclude = ntu.published_missing(benchmark.variant)
    needed = sorted(n for n in skeletons if n not in videos and str(n) not in exclude)
    problems = []
    for setup, names in itertools.groupby(needed, key=lambda n: n.setup):
        names = list(names)
        if not any(n.setup == setup for n in videos):
            problems.append(f"{folder}: no RGB videos for setup S{setup:03d} (needed by {len(names)} "
                            f"camera file{'s' if len(names) > 1 else ''}; nturgbd_rgb_s{setup:03d}.zip)")
        else:
            problems += [f"{folder}: {n}{ntu.RGB_SUFFIX} missing" for n in names]
    return problems


def _ranges(values: list[int]) -> str:
    """[1, 2, 3, 7] -> "S001-S003, S007"."""
    parts = []
    for _, run in itertools.groupby(enumerate(values), key=lambda iv: iv[1] - iv[0]):
        run = [v for _, v in run]
        parts.append(f"S{run[0]:03d}" + (f"-S{run[-1]:03d}" if len(run) > 1 else ""))
    return ", ".join(parts)
