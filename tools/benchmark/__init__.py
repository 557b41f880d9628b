"""Performance measurements. Claims in docs come from this tool's output (docs/PERFORMANCE.md).

    python -m tools.benchmark step --preset micro --batch 16                    # teacher, student, student stage
    python -m tools.benchmark step --preset vit_b16 --batch 8 --dtype bfloat16 --peak-tflops 790   # on a GPU
    python -m tools.benchmark step --preset vit_b16 --batch 1 --compile-only    # compile time, FLOPs, memory
    python -m tools.benchmark data                                              # default SynthMV size vs the step
    python -m tools.benchmark data --tfds synth_mv/partial --data-dir ~/tensorflow_datasets
    python -m tools.benchmark stgcn-vs-torch                                    # B=16, M=2, T=100, NTU-25, SGD
    python -m tools.benchmark videomae-vs-hf                                    # ViT-S/16, 8x112^2, batch 4, AdamW
    python -m tools.benchmark scaling --presets vit_b16 vit_l16 --devices 8 64  # DP vs FSDP, compile only
    python -m tools.benchmark deploy [--export runs/demo/export]                # jax.export vs ONNX fp32 / int8

Modes:
  step            clips/s and compile time of the teacher-stage step, the student alone (forward, backward,
                  update; no teacher) and the full student-stage step (frozen teacher forward + student);
                  FLOPs per step from XLA's cost analysis, MFU given --peak-tflops (per device), memory from
                  the compiled step's memory analysis. The batch has the shapes and dtypes the pipeline delivers
                  (`vicokd_jax.train.setup.input_specs`), filled with random pixels and skeletons, every view
                  visible. Steps run back to back without a host sync; the clock stops when the last step's
                  outputs are ready.
  data            examples/s of SynthMV generation and of the grain pipeline (SynthMV or a prepared TFDS
                  source), against what the student-stage step consumes at the same sizes (clips/s), and the
                  two together (pipeline feeding the step, as in the training loop).
  stgcn-vs-torch  our ST-GCN train step against a PyTorch ST-GCN with pyskl's layout (tools/torch_stgcn.py),
                  same weights, batch and optimiser (SGD, Nesterov momentum, weight decay). Each framework runs
                  in its own process (`worker.py`), processes alternated A, B, A, B (`processes.py`); prints
                  medians, spread, compile time, peak RSS and the ratio. `--in-process`: both in one process,
                  interleaved (the earlier method).
  videomae-vs-hf  our video-transformer train step against HF transformers' VideoMAEForVideoClassification
                  (PyTorch) with the same weights (`vk.convert.video_transformer_from_hf`), AdamW, CE; separate
                  processes, alternated, as above.
  deploy          an exported student (default: the default config's, random weights): per-clip latency at
                  batch 1 and throughput at batch 16 of the jax.export predictor, ONNX Runtime fp32 and ONNX
                  Runtime int8 (`vicokd_jax.export.load` / `load_onnx`), each in its own worker process,
                  alternated as above; the three models' sizes.
  scaling         compiles (never runs) the student-stage step on fake CPU meshes of N devices, one subprocess
                  per N (the device count is fixed when JAX starts), and reports per-device parameter +
                  optimizer memory for data parallelism (DP: replicated) vs FSDP, and the collectives in the HLO.

Timings on a shared machine are noisy: compare ratios from one run (alternated), never absolute numbers
taken at different times.

Code: one module per mode (step.py, data.py, stgcn_vs_torch.py, videomae_vs_hf.py, scaling.py, deploy.py), what several
modes share in common.py (timing, XLA cost and memory analysis), train_steps.py (the steps measured),
processes.py and worker.py (one framework per process), the CLI in __main__.py.
"""
