"""The zoo tier's models: every torchvision classifier, a sample of timm families and small
transformers architectures, as a project's `[tool.cnnbudget.models.<key>]` tables.

The file is also copied into the throwaway project the gate runs in, where
`zoo:transformers_model` builds a transformers model from a config written here, so nothing is
downloaded. Importing it, or listing the models, imports no model library: collecting the zoo
tier stays cheap, and every tier collects it (tests/slow/test_collection.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

# A budget no model reaches: the zoo checks counts, not budgets.
NO_BUDGET = 10**15


@dataclass(frozen=True)
class ZooModel:
    """One model of the zoo: its key in the project, its target and keyword arguments."""

    key: str
    target: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    input_shape: list[int] | None = None  # when set, the gate also runs a forward pass

    def table(self) -> dict[str, Any]:
        """The model's `[tool.cnnbudget.models.<key>]` table."""
        table: dict[str, Any] = {"target": self.target, "max_params": NO_BUDGET}
        if self.kwargs:
            table["kwargs"] = self.kwargs
        if self.input_shape:
            table["input_shape"] = self.input_shape
        return table


def transformers_model(architecture: str, **config: Any) -> nn.Module:
    """`transformers.<architecture>`, built from a config of these keyword arguments."""
    import transformers

    model_class = getattr(transformers, architecture)
    model: nn.Module = model_class(model_class.config_class(**config))
    return model


# -- torchvision ---------------------------------------------------------------------------

# Without init_weights these two warn that their default initialisation will change.
_TORCHVISION_KWARGS: dict[str, dict[str, Any]] = {
    "googlenet": {"init_weights": True},
    "inception_v3": {"init_weights": True},
}


# Every classification model torchvision lists, in its order: `torchvision.models.list_models(
# module=torchvision.models)`, which would import torchvision at collection. The zoo's
# test_the_zoo_has_every_torchvision_classifier keeps this equal to the installed release's list.
# fmt: off
TORCHVISION_CLASSIFIERS = [
    "alexnet",
    "convnext_base", "convnext_large", "convnext_small", "convnext_tiny",
    "densenet121", "densenet161", "densenet169", "densenet201",
    "efficientnet_b0", "efficientnet_b1", "efficientnet_b2", "efficientnet_b3", "efficientnet_b4",
    "efficientnet_b5", "efficientnet_b6", "efficientnet_b7", "efficientnet_v2_l",
    "efficientnet_v2_m", "efficientnet_v2_s",
    "googlenet",
    "inception_v3",
    "maxvit_t",
    "mnasnet0_5", "mnasnet0_75", "mnasnet1_0", "mnasnet1_3",
    "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small",
    "regnet_x_16gf", "regnet_x_1_6gf", "regnet_x_32gf", "regnet_x_3_2gf", "regnet_x_400mf",
    "regnet_x_800mf", "regnet_x_8gf", "regnet_y_128gf", "regnet_y_16gf", "regnet_y_1_6gf",
    "regnet_y_32gf", "regnet_y_3_2gf", "regnet_y_400mf", "regnet_y_800mf", "regnet_y_8gf",
    "resnet101", "resnet152", "resnet18", "resnet34", "resnet50",
    "resnext101_32x8d", "resnext101_64x4d", "resnext50_32x4d",
    "shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "shufflenet_v2_x1_5", "shufflenet_v2_x2_0",
    "squeezenet1_0", "squeezenet1_1",
    "swin_b", "swin_s", "swin_t", "swin_v2_b", "swin_v2_s", "swin_v2_t",
    "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn",
    "vit_b_16", "vit_b_32", "vit_h_14", "vit_l_16", "vit_l_32",
    "wide_resnet101_2", "wide_resnet50_2",
]
# fmt: on


def torchvision_models() -> list[ZooModel]:
    """Every classification model torchvision lists, with its defaults (weights=None)."""
    return [
        ZooModel(name, f"torchvision.models:{name}", _TORCHVISION_KWARGS.get(name, {}))
        for name in TORCHVISION_CLASSIFIERS
    ]


# -- timm ----------------------------------------------------------------------------------

# The smallest variant of each family, with the input size it was trained at.
_TIMM: dict[str, int | None] = {
    "resnet10t": 224,
    "efficientnet_b0": 224,
    "mobilenetv3_small_050": 224,
    "mobilenetv4_conv_small": 224,
    "convnext_atto": 224,
    "vit_tiny_patch16_224": 224,
    "deit_tiny_patch16_224": 224,
    "swin_tiny_patch4_window7_224": 224,
    "regnetx_002": 224,
    "densenet121": 224,
    "inception_v3": 299,
    "legacy_xception": 299,
    "dla46_c": 224,
    "cspresnet50": 256,
    "cs3darknet_s": 256,
    "ghostnet_050": 224,
    "levit_128s": 224,
    "mixer_s32_224": 224,
    "poolformer_s12": 224,
    "pit_ti_224": 224,
    "cait_xxs24_224": 224,
    "convit_tiny": 224,
    "nf_regnet_b0": 256,
    "beit_base_patch16_224": 224,
    "coatnet_nano_rw_224": 224,
    "maxvit_pico_rw_256": 256,
    "edgenext_xx_small": 256,
    "fastvit_t8": 256,
    "hrnet_w18_small": 224,
    "efficientformer_l1": 224,
    "mobilevit_xxs": 256,
    "repvgg_a0": 224,
    "rexnet_100": 224,
    "mobileone_s0": 224,
    "tiny_vit_5m_224": 224,
    "eva02_tiny_patch14_224": 224,
    "pvt_v2_b0": 224,
    "twins_pcpvt_small": 224,
    "crossvit_tiny_240": 240,
    "tnt_s_patch16_224": 224,
    "xcit_nano_12_p16_224": 224,
    "gcvit_xxtiny": 224,
    "efficientvit_b0": 224,
    "hgnet_tiny": 224,
    "res2net50_14w_8s": 224,
    "resnest14d": 224,
    "skresnet18": 224,
    "legacy_seresnet18": 224,
    "dpn48b": 224,
    "ese_vovnet19b_slim": 224,
    "selecsls42": 224,
    "nest_tiny": 224,
    # Its LSTMs take about 15 s to run forward on meta, more than the rest of the zoo.
    "sequencer2d_s": None,
    "inception_next_tiny": 224,
    "focalnet_tiny_srf": 224,
    "starnet_s050": 224,
    "mambaout_femto": 224,
    "ghostnetv2_100": 224,
    "hiera_tiny_224": 224,
    "lcnet_050": 224,
}


def timm_models() -> list[ZooModel]:
    """One model of each timm family above, randomly initialised (pretrained=False)."""
    return [
        ZooModel(
            name,
            "timm:create_model",
            {"model_name": name},
            input_shape=[1, 3, size, size] if size else None,
        )
        for name, size in _TIMM.items()
    ]


# -- transformers --------------------------------------------------------------------------

# One small size for all: two layers of width 32, so that a cpu build takes milliseconds.
_TEXT: dict[str, Any] = {
    "vocab_size": 256,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 64,
    "max_position_embeddings": 64,
}
_GQA = {**_TEXT, "num_key_value_heads": 2}
_GPT2_STYLE = {"vocab_size": 256, "n_positions": 64, "n_embd": 32, "n_layer": 2, "n_head": 4}
_SEQ2SEQ: dict[str, Any] = {
    "vocab_size": 256,
    "d_model": 32,
    "encoder_layers": 2,
    "decoder_layers": 2,
    "encoder_attention_heads": 4,
    "decoder_attention_heads": 4,
    "encoder_ffn_dim": 64,
    "decoder_ffn_dim": 64,
    "max_position_embeddings": 64,
}
# Special tokens inside the small vocabulary, for configs whose defaults lie beyond it.
_TOKENS = {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}
_VISION: dict[str, Any] = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 64,
    "image_size": 32,
    "patch_size": 8,
}
_TEXT_TOWER = {**_TEXT, "max_position_embeddings": 32, **_TOKENS}

_TRANSFORMERS: dict[str, dict[str, Any]] = {
    # decoders
    "llama": {"architecture": "LlamaForCausalLM", **_GQA},
    "mistral": {"architecture": "MistralForCausalLM", **_GQA, "sliding_window": 16},
    "mixtral": {
        "architecture": "MixtralForCausalLM",
        **_GQA,
        "num_local_experts": 4,
        "num_experts_per_tok": 2,
    },
    "qwen2": {"architecture": "Qwen2ForCausalLM", **_GQA},
    "qwen3": {"architecture": "Qwen3ForCausalLM", **_GQA, "head_dim": 8},
    "qwen2_moe": {
        "architecture": "Qwen2MoeForCausalLM",
        **_GQA,
        "num_experts": 4,
        "num_experts_per_tok": 2,
        "moe_intermediate_size": 32,
        "shared_expert_intermediate_size": 32,
    },
    "gemma": {"architecture": "GemmaForCausalLM", **_GQA, "head_dim": 8},
    "gemma2": {"architecture": "Gemma2ForCausalLM", **_GQA, "head_dim": 8},
    "gemma3": {"architecture": "Gemma3ForCausalLM", **_GQA, "head_dim": 8},
    "phi": {"architecture": "PhiForCausalLM", **_TEXT},
    "phi3": {"architecture": "Phi3ForCausalLM", **_GQA, **_TOKENS},
    "stablelm": {"architecture": "StableLmForCausalLM", **_GQA},
    "olmo": {"architecture": "OlmoForCausalLM", **_GQA, **_TOKENS},
    "cohere": {"architecture": "CohereForCausalLM", **_GQA, **_TOKENS},
    "gpt_neox": {"architecture": "GPTNeoXForCausalLM", **_TEXT, **_TOKENS},
    "falcon": {
        "architecture": "FalconForCausalLM",
        "vocab_size": 256,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
    },
    "gpt2": {"architecture": "GPT2LMHeadModel", **_GPT2_STYLE, **_TOKENS},
    "gptj": {"architecture": "GPTJForCausalLM", **_GPT2_STYLE, "rotary_dim": 4, **_TOKENS},
    "gpt_bigcode": {"architecture": "GPTBigCodeForCausalLM", **_GPT2_STYLE, **_TOKENS},
    "opt": {
        "architecture": "OPTForCausalLM",
        "vocab_size": 256,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "ffn_dim": 64,
        "max_position_embeddings": 64,
        "word_embed_proj_dim": 32,
        **_TOKENS,
    },
    "bloom": {
        "architecture": "BloomForCausalLM",
        "vocab_size": 256,
        "hidden_size": 32,
        "n_layer": 2,
        "n_head": 4,
        **_TOKENS,
    },
    "mamba": {
        "architecture": "MambaForCausalLM",
        "vocab_size": 256,
        "hidden_size": 32,
        "state_size": 8,
        "num_hidden_layers": 2,
        **_TOKENS,
    },
    # encoders
    "bert": {"architecture": "BertForMaskedLM", **_TEXT},
    "roberta": {"architecture": "RobertaForMaskedLM", **_TEXT},
    "distilbert": {
        "architecture": "DistilBertForMaskedLM",
        "vocab_size": 256,
        "dim": 32,
        "n_layers": 2,
        "n_heads": 4,
        "hidden_dim": 64,
        "max_position_embeddings": 64,
    },
    "albert": {"architecture": "AlbertForMaskedLM", **_TEXT, "embedding_size": 16},
    "electra": {"architecture": "ElectraForPreTraining", **_TEXT, "embedding_size": 16},
    "deberta_v2": {"architecture": "DebertaV2ForMaskedLM", **_TEXT},
    "modernbert": {
        "architecture": "ModernBertForMaskedLM",
        **_TEXT,
        **_TOKENS,
        "cls_token_id": 3,
        "sep_token_id": 4,
    },
    # encoder-decoders
    "t5": {
        "architecture": "T5ForConditionalGeneration",
        "vocab_size": 256,
        "d_model": 32,
        "d_kv": 8,
        "d_ff": 64,
        "num_layers": 2,
        "num_heads": 4,
    },
    "bart": {"architecture": "BartForConditionalGeneration", **_SEQ2SEQ},
    "mbart": {"architecture": "MBartForConditionalGeneration", **_SEQ2SEQ},
    "marian": {
        "architecture": "MarianMTModel",
        **_SEQ2SEQ,
        **_TOKENS,
        "decoder_start_token_id": 0,
    },
    "pegasus": {"architecture": "PegasusForConditionalGeneration", **_SEQ2SEQ},
    "whisper": {
        "architecture": "WhisperForConditionalGeneration",
        **{k: v for k, v in _SEQ2SEQ.items() if k != "max_position_embeddings"},
        "num_mel_bins": 16,
        "max_source_positions": 32,
        "max_target_positions": 32,
        **_TOKENS,
        "decoder_start_token_id": 3,
        "suppress_tokens": [],
        "begin_suppress_tokens": [],
    },
    # vision
    "vit": {"architecture": "ViTForImageClassification", **_VISION, "num_labels": 10},
    "deit": {"architecture": "DeiTForImageClassification", **_VISION, "num_labels": 10},
    "beit": {"architecture": "BeitForImageClassification", **_VISION, "num_labels": 10},
    "dinov2": {"architecture": "Dinov2Model", **_VISION},
    "swin": {
        "architecture": "SwinForImageClassification",
        "image_size": 32,
        "patch_size": 4,
        "embed_dim": 16,
        "depths": [1, 1],
        "num_heads": [2, 2],
        "window_size": 4,
        "num_labels": 10,
    },
    "convnext": {
        "architecture": "ConvNextForImageClassification",
        "num_stages": 2,
        "hidden_sizes": [8, 16],
        "depths": [1, 1],
        "num_labels": 10,
    },
    "resnet": {
        "architecture": "ResNetForImageClassification",
        "embedding_size": 8,
        "hidden_sizes": [8, 16],
        "depths": [1, 1],
        "layer_type": "basic",
        "num_labels": 10,
    },
    "segformer": {
        "architecture": "SegformerForSemanticSegmentation",
        "num_encoder_blocks": 2,
        "depths": [1, 1],
        "sr_ratios": [2, 1],
        "hidden_sizes": [8, 16],
        "patch_sizes": [7, 3],
        "strides": [4, 2],
        "num_attention_heads": [1, 2],
        "mlp_ratios": [2, 2],
        "decoder_hidden_size": 32,
        "num_labels": 4,
    },
    # speech
    "wav2vec2": {
        "architecture": "Wav2Vec2ForCTC",
        **{k: v for k, v in _TEXT.items() if k != "max_position_embeddings"},
        "vocab_size": 32,
        "conv_dim": [8, 8],
        "conv_stride": [5, 2],
        "conv_kernel": [10, 3],
        "num_conv_pos_embeddings": 16,
        "num_conv_pos_embedding_groups": 4,
    },
    # multimodal
    "clip": {
        "architecture": "CLIPModel",
        "text_config": _TEXT_TOWER,
        "vision_config": _VISION,
        "projection_dim": 16,
    },
    "siglip": {
        "architecture": "SiglipModel",
        "text_config": _TEXT_TOWER,
        "vision_config": _VISION,
    },
    "blip": {
        "architecture": "BlipForConditionalGeneration",
        "text_config": {**_TEXT_TOWER, "encoder_hidden_size": 32},
        "vision_config": _VISION,
    },
    "llava": {
        "architecture": "LlavaForConditionalGeneration",
        "text_config": {"model_type": "llama", **_GQA},
        "vision_config": {"model_type": "clip_vision_model", **_VISION},
        "image_token_index": 255,
    },
}


def transformers_models() -> list[ZooModel]:
    """The architectures above, each built from its small config by `transformers_model`."""
    return [
        ZooModel(key, "zoo:transformers_model", config) for key, config in _TRANSFORMERS.items()
    ]


# -- ultralytics ---------------------------------------------------------------------------

# Each task's model class in ultralytics.nn.tasks, and the input size it is trained at.
_ULTRALYTICS_TASKS: dict[str, tuple[str, int]] = {
    "detect": ("DetectionModel", 640),
    "segment": ("SegmentationModel", 640),
    "pose": ("PoseModel", 640),
    "obb": ("OBBModel", 640),
    "classify": ("ClassificationModel", 224),
    "rtdetr": ("RTDETRDetectionModel", 640),
}

# Models built from the yaml configs ultralytics ships (the scale is the letter after the
# generation: `yolov8n.yaml` is yolov8.yaml at scale n), no weights: each generation's
# detection model, and the other tasks of three generations (two for classify). Their constructors run a forward
# pass to find their strides, on meta by the fallback.
# fmt: off
_ULTRALYTICS: dict[str, str] = {
    "yolov3-tiny": "detect", "yolov5n": "detect", "yolov6n": "detect", "yolov8n": "detect",
    "yolov9t": "detect", "yolov10n": "detect", "yolo11n": "detect", "yolo12n": "detect",
    "yolo26n": "detect",
    "yolov8n-seg": "segment", "yolo11n-seg": "segment", "yolo26n-seg": "segment",
    "yolov8n-pose": "pose", "yolo11n-pose": "pose", "yolo26n-pose": "pose",
    "yolov8n-obb": "obb", "yolo11n-obb": "obb", "yolo26n-obb": "obb",
    "yolov8n-cls": "classify", "yolo11n-cls": "classify",  # yolo26-cls.yaml is yolo11's
    "rtdetr-l": "rtdetr",
}
# fmt: on


def ultralytics_models() -> list[ZooModel]:
    """The models above, each its task's class in ultralytics.nn.tasks given the yaml."""
    models = []
    for name, task in _ULTRALYTICS.items():
        cls, size = _ULTRALYTICS_TASKS[task]
        models.append(
            ZooModel(
                name,
                f"ultralytics.nn.tasks:{cls}",
                {"cfg": f"{name}.yaml", "verbose": False},
                input_shape=[1, 3, size, size],
            )
        )
    return models


def ultralytics_task(key: str) -> str:
    """The task of an ultralytics model of the zoo."""
    return _ULTRALYTICS[key]


def ultralytics_fused(task_class: str, cfg: str) -> nn.Module:
    """A model of ultralytics.nn.tasks, fused as deployed: the factory docs/budgets.md suggests."""
    from ultralytics.nn import tasks

    model: nn.Module = getattr(tasks, task_class)(cfg, verbose=False).fuse(verbose=False)
    return model
