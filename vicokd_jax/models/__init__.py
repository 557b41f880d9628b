"""Pure functional Flax models: skeleton graphs, ST-GCN, video transformers, audio encoders, teacher and student.

The main classes are imported here; every other submodule is imported on first access (`vk.models.heads`).
"""
from vicokd_jax import lazy_submodules
from vicokd_jax.models import graph, presets
from vicokd_jax.models.attention import CrossModalAttention
from vicokd_jax.models.audio_segment import SegmentAudioEncoder
from vicokd_jax.models.audio_transformer import AudioTransformer
from vicokd_jax.models.graph import Graph, get_graph
from vicokd_jax.models.stgcn import STGCN
from vicokd_jax.models.student import Student
from vicokd_jax.models.teacher import Teacher
from vicokd_jax.models.video_transformer import VIDEO_TRANSFORMER_PRESETS, VideoTransformer

__getattr__, __dir__ = lazy_submodules(__name__, globals())
del lazy_submodules  # keep the namespace to submodules and public names
