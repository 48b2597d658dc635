"""Tiny random-weight diffusers pipelines, built offline from configs, for adapter tests.

Every builder seeds torch itself and returns the same pipeline (weights, tokenizers, scheduler) on
every call, in float32 on the CPU, in eval mode, with the progress bar off. Nothing is downloaded:
the tokenizers are built in memory from a small hand-written vocabulary (``WORDS``; other words fall
back to letters, other characters to the unknown token), so any prompt works and different prompts
give different text embeddings.

    pipe = PIPES["flux"]()
    s = SIZE["flux"]
    out = pipe("a photo of a cat", num_inference_steps=2, height=s, width=s, output_type="latent",
               generator=torch.Generator().manual_seed(0), **CALL_KWARGS["flux"])

``SIZE`` is the recommended height = width in pixels (all VAEs downsample 4x, so latents are 8x8),
``CALL_KWARGS`` the extra keyword arguments that keep the text sequences short (``max_sequence_length``
for the T5 / Qwen3 encoders; the CLIP tokenizers pad to 77 tokens as in the real models).
Run ``python tests/tiny_pipes.py`` to build every pipeline, run it, and print shapes and times.
"""

from __future__ import annotations

import functools

import torch

__all__ = [
    "CALL_KWARGS",
    "MAX_SEQUENCE_LENGTH",
    "PIPES",
    "SIZE",
    "TINY_SYSTEM_MESSAGE",
    "WORDS",
    "clip_tokenizer",
    "qwen_tokenizer",
    "t5_tokenizer",
    "mistral_processor",
    "tiny_flux2_dev_pipe",
    "tiny_flux2_klein_pipe",
    "tiny_flux_kontext_pipe",
    "tiny_flux_pipe",
    "tiny_sd3_pipe",
    "tiny_sd_pipe",
    "tiny_sdxl_pipe",
]

WORDS = (
    "a", "an", "the", "of", "in", "on", "and", "with", "is", "at", "photo", "picture", "painting", "image",
    "cat", "dog", "bird", "horse", "man", "woman", "car", "tree", "house", "flower", "sky", "sea", "mountain",
    "red", "blue", "green", "yellow", "white", "black", "big", "small", "sign", "says", "hello", "world",
    "holding", "sitting", "dancing", "running", "snow", "forest", "city", "street", "night", "sunset",
)  # fmt: skip
LETTERS = "abcdefghijklmnopqrstuvwxyz0123456789"
PUNCTUATION = ".,!?'-:;\"()"

# Text sequence lengths: CLIP pads to its model_max_length (77); T5, Qwen3 and Mistral-3 pad to
# max_sequence_length.
CLIP_LENGTH = 77
MAX_SEQUENCE_LENGTH = {"flux": 16, "flux_kontext": 16, "flux2": 32, "flux2_dev": 32, "sd3": 16, "sd": None,
                       "sdxl": None}  # fmt: skip
SIZE = {"flux": 32, "flux_kontext": 32, "flux2": 32, "flux2_dev": 32, "sd3": 32, "sd": 32, "sdxl": 32}
CALL_KWARGS = {k: ({"max_sequence_length": v} if v else {}) for k, v in MAX_SEQUENCE_LENGTH.items()}
CALL_KWARGS["flux_kontext"]["max_area"] = SIZE["flux_kontext"] ** 2  # the pipeline rescales to max_area
VAE_BLOCKS = (8, 16, 16)  # 3 levels: vae_scale_factor 4, so SIZE 32 -> 8x8 latents
_NO_QUANT = {"use_quant_conv": False, "use_post_quant_conv": False}  # FLUX.1 / SD3 VAEs have neither


# ----------------------------------------------------------------------------------------------------
# Tokenizers
# ----------------------------------------------------------------------------------------------------


def _bpe(symbols: list[str], ranks: dict) -> list[str]:
    """Byte-pair encoding of one pre-token as `tokenizers` does it: merge the lowest-ranked adjacent pair
    (leftmost among equals) until none applies."""
    symbols = list(symbols)
    while len(symbols) > 1:
        best = None
        for i in range(len(symbols) - 1):
            r = ranks.get((symbols[i], symbols[i + 1]))
            if r is not None and (best is None or r < best[0]):
                best = (r, i)
        if best is None:
            break
        i = best[1]
        symbols[i : i + 2] = [symbols[i] + symbols[i + 1]]
    return symbols


def _merges_for(words: list[list[str]], vocab: dict[str, int]) -> list[tuple[str, str]]:
    """BPE merges under which each word (a list of initial symbols) becomes one token; adds the merged
    tokens to ``vocab``. A merge appended after a word is whole never fires inside it, so earlier words
    stay whole."""
    ranks: dict[tuple[str, str], int] = {}
    merges = []
    for symbols in words:
        while len(parts := _bpe(symbols, ranks)) > 1:
            a, b = parts[0], parts[1]
            ranks[(a, b)] = len(merges)
            merges.append((a, b))
            vocab.setdefault(a + b, len(vocab))
    return merges


@functools.lru_cache
def _clip_vocab() -> tuple[dict[str, int], tuple[tuple[str, str], ...]]:
    vocab: dict[str, int] = {"<unk>": 0}
    for c in LETTERS + PUNCTUATION:
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    merges = _merges_for([list(w[:-1]) + [w[-1] + "</w>"] for w in WORDS if len(w) > 1], vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)  # highest id, as in CLIP
    return vocab, tuple(merges)


def clip_tokenizer(pad_token: str = "<|endoftext|>"):
    """CLIP BPE tokenizer (lower-cases; words end in ``</w>``), padded to 77 tokens."""
    from transformers import CLIPTokenizer

    vocab, merges = _clip_vocab()
    tok = CLIPTokenizer(
        vocab=dict(vocab), merges=list(merges), unk_token="<unk>", pad_token=pad_token,
        model_max_length=CLIP_LENGTH,
    )  # fmt: skip
    return tok


@functools.lru_cache
def _t5_vocab() -> tuple[tuple[str, float], ...]:
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -4.0)]
    pieces += [("\u2581" + w, -1.0 - 0.01 * i) for i, w in enumerate(WORDS)]
    pieces += [(c, -8.0) for c in LETTERS + PUNCTUATION]
    pieces += [("\u2581" + c, -8.5) for c in LETTERS + PUNCTUATION if c not in WORDS]
    return tuple(pieces)


def t5_tokenizer():
    """T5 (SentencePiece unigram) tokenizer: ``<pad>`` = 0, ``</s>`` = 1 appended, ``<unk>`` = 2."""
    from tokenizers import normalizers
    from transformers import T5TokenizerFast

    tok = T5TokenizerFast(vocab=list(_t5_vocab()), extra_ids=0, model_max_length=512)
    tok.backend_tokenizer.normalizer = normalizers.Lowercase()
    return tok


QWEN_SPECIAL = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>")
QWEN_CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}"
    "{{- '<think>\\n\\n</think>\\n\\n' }}"
    "{%- endif %}"
    "{%- endif %}"
)  # Qwen3's template, reduced to plain messages


@functools.lru_cache
def _qwen_vocab() -> tuple[dict[str, int], tuple[tuple[str, str], ...]]:
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    vocab: dict[str, int] = {}
    for c in sorted(bytes_to_unicode().values(), key=ord):  # every byte: no text is ever unknown
        vocab.setdefault(c, len(vocab))
    words = [list("\u0120" + w) for w in WORDS] + [list(w) for w in WORDS + ("user", "assistant")]
    merges = _merges_for([w for w in words if len(w) > 1], vocab)
    for t in QWEN_SPECIAL:
        vocab[t] = len(vocab)
    return vocab, tuple(merges)


def qwen_tokenizer():
    """Qwen2/3 byte-level BPE tokenizer with a Qwen3-style chat template (``enable_thinking=False``
    adds the empty think block); pads with ``<|endoftext|>``."""
    from transformers import AddedToken, Qwen2TokenizerFast

    vocab, merges = _qwen_vocab()
    tok = Qwen2TokenizerFast(
        vocab=dict(vocab), merges=list(merges), unk_token=None, model_max_length=4096,
        chat_template=QWEN_CHAT_TEMPLATE,
    )  # fmt: skip
    tok.add_tokens([AddedToken(t, special=True, normalized=False) for t in QWEN_SPECIAL[1:]])
    tok.eos_token = "<|im_end|>"
    return tok


# ----------------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------------


def _clip_text(tok, hidden: int, projection: int | None = None, act: str = "quick_gelu", layers: int = 2):
    """CLIPTextModel (or ...WithProjection when ``projection`` is given); pools at the first eos."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cfg = CLIPTextConfig(
        vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=4, max_position_embeddings=CLIP_LENGTH, hidden_act=act,
        projection_dim=projection or hidden, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )  # fmt: skip
    cls = CLIPTextModel if projection is None else CLIPTextModelWithProjection
    return cls(cfg).eval()


def _t5(tok, d_model: int):
    from transformers import T5Config, T5EncoderModel

    cfg = T5Config(
        vocab_size=len(tok), d_model=d_model, d_kv=8, d_ff=2 * d_model, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, relative_attention_max_distance=32, feed_forward_proj="gated-gelu",
        is_encoder_decoder=False, use_cache=False, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
    )  # fmt: skip
    return T5EncoderModel(cfg).eval()


def _vae(latent_channels: int, **config):
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=latent_channels, block_out_channels=VAE_BLOCKS,
        down_block_types=("DownEncoderBlock2D",) * len(VAE_BLOCKS),
        up_block_types=("UpDecoderBlock2D",) * len(VAE_BLOCKS),
        layers_per_block=1, norm_num_groups=4, sample_size=32, **config,
    ).eval()  # fmt: skip


def _ddim(prediction_type: str = "epsilon"):
    """SD 1.5 / SDXL scheduler settings on a DDIMScheduler."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        clip_sample=False, set_alpha_to_one=False, steps_offset=1, timestep_spacing="leading",
        prediction_type=prediction_type,
    )  # fmt: skip


def _ready(pipe):
    pipe.set_progress_bar_config(disable=True)
    return pipe  # already float32 on the CPU (a pipe.to(dtype) cast would only add warnings)


# ----------------------------------------------------------------------------------------------------
# Pipelines
# ----------------------------------------------------------------------------------------------------


def tiny_flux_pipe(guidance_embeds: bool = True):
    """FluxPipeline (FLUX.1-dev layout; ``guidance_embeds=False`` is schnell-like): CLIP-L pooled (32) +
    T5 sequence (32), 16 latent channels packed 2x2 into 64, FLUX.1-dev's VAE scale / shift and
    dynamically shifted scheduler."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    torch.manual_seed(0)
    tokenizer, tokenizer_2 = clip_tokenizer(), t5_tokenizer()
    text_encoder = _clip_text(tokenizer, 32)
    text_encoder_2 = _t5(tokenizer_2, 32)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=64, num_layers=1, num_single_layers=2, attention_head_dim=8,
        num_attention_heads=4, joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=(2, 2, 4),
        guidance_embeds=guidance_embeds,
    ).eval()  # fmt: skip
    vae = _vae(16, scaling_factor=0.3611, shift_factor=0.1159, **_NO_QUANT)
    scheduler = FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
        base_image_seq_len=256, max_image_seq_len=4096,
    )  # fmt: skip
    pipe = FluxPipeline(
        scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
        text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2, transformer=transformer,
    )  # fmt: skip
    return _ready(pipe)


def tiny_flux_kontext_pipe():
    """FluxKontextPipeline on the tiny FLUX.1-dev components (Kontext is FLUX.1 [dev]'s architecture,
    trained to read the reference's tokens)."""
    from diffusers import FluxKontextPipeline

    return _ready(FluxKontextPipeline(**tiny_flux_pipe().components))


def _flux2_transformer(guidance_embeds: bool):
    """Flux2Transformer2DModel over 32 patchified channels and 48-dim text tokens."""
    from diffusers import Flux2Transformer2DModel

    return Flux2Transformer2DModel(
        patch_size=1, in_channels=32, num_layers=1, num_single_layers=2, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=48, timestep_guidance_channels=32,
        axes_dims_rope=(4, 4, 4, 4), guidance_embeds=guidance_embeds,
    ).eval()  # fmt: skip


def _flux2_vae_and_scheduler(latent_channels: int = 8, blocks: tuple = VAE_BLOCKS):
    """AutoencoderKLFlux2 with 8 latent channels (FLUX.2's real VAE: 32, and four levels of ``blocks``)
    and non-trivial batch-norm statistics, and FLUX.2's dynamically shifted scheduler."""
    from diffusers import AutoencoderKLFlux2, FlowMatchEulerDiscreteScheduler

    vae = AutoencoderKLFlux2(
        in_channels=3, out_channels=3, latent_channels=latent_channels, block_out_channels=blocks,
        down_block_types=("DownEncoderBlock2D",) * len(blocks),
        up_block_types=("UpDecoderBlock2D",) * len(blocks),
        layers_per_block=1, norm_num_groups=4, sample_size=32,
    ).eval()  # fmt: skip
    with torch.no_grad():  # latent statistics the pipeline must undo before decoding
        vae.bn.running_mean.copy_(0.1 * torch.randn_like(vae.bn.running_mean))
        vae.bn.running_var.copy_(torch.empty_like(vae.bn.running_var).uniform_(0.5, 2.0))
    scheduler = FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
        base_image_seq_len=256, max_image_seq_len=4096, time_shift_type="exponential",
    )  # fmt: skip
    return vae, scheduler


def tiny_flux2_klein_pipe(is_distilled: bool = False):
    """Flux2KleinPipeline (FLUX.2 klein base; ``is_distilled=True`` is the 4-step distilled variant that
    ignores guidance): Qwen3ForCausalLM with 28 layers of width 16, so the default
    ``text_encoder_out_layers=(9, 18, 27)`` gives 48-dim text tokens; AutoencoderKLFlux2 with 8 latent
    channels, patchified 2x2 to 32, with non-trivial batch-norm statistics."""
    from diffusers import Flux2KleinPipeline
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    tokenizer = qwen_tokenizer()
    cfg = Qwen3Config(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=28,
        num_attention_heads=2, num_key_value_heads=1, head_dim=8, max_position_embeddings=256,
        tie_word_embeddings=True, use_cache=False, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id, bos_token_id=None,
    )  # fmt: skip
    text_encoder = Qwen3ForCausalLM(cfg).eval()
    transformer = _flux2_transformer(guidance_embeds=False)
    vae, scheduler = _flux2_vae_and_scheduler()
    pipe = Flux2KleinPipeline(
        scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
        transformer=transformer, is_distilled=is_distilled,
    )  # fmt: skip
    return _ready(pipe)


MISTRAL_IMAGE_TOKENS = ("[IMG]", "[IMG_BREAK]", "[IMG_END]")
MISTRAL_CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '[' + message['role'] + ']' }}"
    "{%- for part in message['content'] %}{%- if part['type'] == 'text' %}{{- part['text'] }}{%- endif %}"
    "{%- endfor %}"
    "{{- '[/' + message['role'] + ']' }}"
    "{%- endfor %}"
)  # the system and user turns as Mistral's template lays them out, text parts only


# FLUX.2 [dev]'s own system message is 113 tokens here: it would fill the 32 kept, and even at 160 the
# prompt's few tokens would barely move a random transformer. A saved folder does not keep this one
# (an attribute, not config): ``Flux2Pipeline.from_pretrained`` brings FLUX.2's back.
TINY_SYSTEM_MESSAGE = "Draw it."


def mistral_processor():
    """PixtralProcessor (FLUX.2 [dev]'s tokenizer): the byte-level BPE vocabulary of
    :func:`qwen_tokenizer` with Pixtral's image tokens and a chat template over content parts, the
    message layout ``Flux2Pipeline``'s ``format_input`` builds."""
    from transformers import AddedToken, PixtralImageProcessor, PixtralProcessor

    tok = qwen_tokenizer()
    tok.add_tokens([AddedToken(t, special=True, normalized=False) for t in MISTRAL_IMAGE_TOKENS])
    return PixtralProcessor(
        image_processor=PixtralImageProcessor(), tokenizer=tok, chat_template=MISTRAL_CHAT_TEMPLATE,
        patch_size=4, spatial_merge_size=1,
    )  # fmt: skip


def mistral3_encoder(processor, hidden: int):
    """Mistral3ForConditionalGeneration (FLUX.2 [dev]'s text encoder) with a 30-layer text model of width
    ``hidden`` (so the default ``text_encoder_out_layers=(10, 20, 30)`` gives ``3 * hidden``-dim text
    tokens: the real 5120 gives the real 15360) and a one-layer Pixtral vision tower the text path never
    uses; narrow everywhere else."""
    from transformers import (
        Mistral3Config,
        Mistral3ForConditionalGeneration,
        MistralConfig,
        PixtralVisionConfig,
    )

    tok = processor.tokenizer
    text = MistralConfig(
        vocab_size=len(tok), hidden_size=hidden, intermediate_size=32, num_hidden_layers=30,
        num_attention_heads=2, num_key_value_heads=1, head_dim=8, max_position_embeddings=1024,
        pad_token_id=tok.pad_token_id,
    )  # fmt: skip
    vision = PixtralVisionConfig(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, head_dim=8,
        patch_size=4, image_size=32,
    )  # fmt: skip
    cfg = Mistral3Config(
        text_config=text, vision_config=vision, image_token_index=tok.convert_tokens_to_ids("[IMG]"),
        spatial_merge_size=1, vision_feature_layer=-1,
    )  # fmt: skip
    return Mistral3ForConditionalGeneration(cfg).eval()


def tiny_flux2_dev_pipe():
    """Flux2Pipeline (FLUX.2 [dev]: guidance distilled into the network, ``guidance_embeds=True``, one
    pass per step): :func:`mistral3_encoder` of width 16 (48-dim text tokens); FLUX.2 klein's VAE and
    scheduler layout."""
    from diffusers import Flux2Pipeline

    torch.manual_seed(0)
    processor = mistral_processor()
    text_encoder = mistral3_encoder(processor, 16)
    transformer = _flux2_transformer(guidance_embeds=True)
    vae, scheduler = _flux2_vae_and_scheduler()
    pipe = Flux2Pipeline(
        scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=processor,
        transformer=transformer,
    )  # fmt: skip
    pipe.system_message = TINY_SYSTEM_MESSAGE
    return _ready(pipe)


def tiny_sd3_pipe():
    """StableDiffusion3Pipeline (SD3-medium layout): CLIP-L (16) and CLIP-G (24) sequences concatenated
    to 40 and zero-padded to the T5 width 48, then 77 CLIP + max_sequence_length T5 tokens; pooled 16 + 24;
    16 latent channels with SD3's VAE scale / shift; shift-3 flow-matching scheduler."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    torch.manual_seed(0)
    tokenizer, tokenizer_2, tokenizer_3 = clip_tokenizer(), clip_tokenizer(pad_token="!"), t5_tokenizer()
    text_encoder = _clip_text(tokenizer, 16, projection=16)
    text_encoder_2 = _clip_text(tokenizer_2, 24, projection=24, act="gelu")
    text_encoder_3 = _t5(tokenizer_3, 48)
    transformer = SD3Transformer2DModel(
        sample_size=8, patch_size=2, in_channels=16, out_channels=16, num_layers=2, attention_head_dim=8,
        num_attention_heads=4, joint_attention_dim=48, caption_projection_dim=32, pooled_projection_dim=40,
        pos_embed_max_size=16,
    ).eval()  # fmt: skip
    vae = _vae(16, scaling_factor=1.5305, shift_factor=0.0609, **_NO_QUANT)
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)
    pipe = StableDiffusion3Pipeline(
        transformer=transformer, scheduler=scheduler, vae=vae, text_encoder=text_encoder,
        tokenizer=tokenizer, text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2,
        text_encoder_3=text_encoder_3, tokenizer_3=tokenizer_3,
    )  # fmt: skip
    return _ready(pipe)


def _unet(cross_attention_dim: int, sdxl: bool = False, projection_dim: int = 0):
    from diffusers import UNet2DConditionModel

    if sdxl:  # text_time conditioning: pooled text (projection_dim) + 6 size / crop ids
        extra = dict(
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=projection_dim + 6 * 8,
        )  # fmt: skip
    else:
        extra = dict(
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        )
    return UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
        cross_attention_dim=cross_attention_dim, attention_head_dim=(2, 4), norm_num_groups=8, **extra,
    ).eval()  # fmt: skip


def tiny_sd_pipe(prediction_type: str = "epsilon"):
    """StableDiffusionPipeline (SD 1.5 layout): CLIP-L last hidden state (77 x 32), 4 latent channels with
    scaling 0.18215, DDIM with SD 1.5's settings and the given prediction type, no safety checker."""
    from diffusers import StableDiffusionPipeline

    torch.manual_seed(0)
    tokenizer = clip_tokenizer()
    text_encoder = _clip_text(tokenizer, 32)
    unet = _unet(32)
    vae = _vae(4, scaling_factor=0.18215)
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=_ddim(prediction_type),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )  # fmt: skip
    return _ready(pipe)


def tiny_sdxl_pipe():
    """StableDiffusionXLPipeline (SDXL base layout): penultimate hidden states of CLIP-L (32) and CLIP-G
    (32) concatenated to 64, pooled CLIP-G projection (32) + 6 time ids as ``text_time`` conditioning,
    4 latent channels with scaling 0.13025, DDIM with SDXL's settings, no watermarker."""
    from diffusers import StableDiffusionXLPipeline

    torch.manual_seed(0)
    tokenizer, tokenizer_2 = clip_tokenizer(), clip_tokenizer(pad_token="!")
    text_encoder = _clip_text(tokenizer, 32)
    text_encoder_2 = _clip_text(tokenizer_2, 32, projection=32, act="gelu")
    unet = _unet(64, sdxl=True, projection_dim=32)
    vae = _vae(4, scaling_factor=0.13025, force_upcast=True)
    pipe = StableDiffusionXLPipeline(
        vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=tokenizer,
        tokenizer_2=tokenizer_2, unet=unet, scheduler=_ddim(), add_watermarker=False,
    )  # fmt: skip
    return _ready(pipe)


def tiny_ddpm_pipe(scheduler=None):
    """DDPMPipeline (unconditional pixel UNet2DModel, 3 x 8 x 8, as google/ddpm-cifar10-32 at toy size);
    ``scheduler`` default: DDPMScheduler's defaults (``clip_sample=True``). Not in PIPES: it takes
    no prompt."""
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=8, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
    ).eval()  # fmt: skip
    return _ready(DDPMPipeline(unet=unet, scheduler=scheduler or DDPMScheduler(num_train_timesteps=1000)))


PIPES = {
    "flux": tiny_flux_pipe,
    "flux_kontext": tiny_flux_kontext_pipe,
    "flux2": tiny_flux2_klein_pipe,
    "flux2_dev": tiny_flux2_dev_pipe,
    "sd3": tiny_sd3_pipe,
    "sd": tiny_sd_pipe,
    "sdxl": tiny_sdxl_pipe,
}



def hub_cache(hub, repo_id: str, snapshots: dict, refs: dict):
    """A hub cache laid out as huggingface_hub writes one: every file a blob named by its content's
    sha256, each snapshot's files links to the blobs, refs naming commits."""
    import hashlib
    import os

    repo = hub / f"models--{repo_id.replace('/', '--')}"
    for commit, source in snapshots.items():
        for f in sorted(p for p in source.rglob("*") if p.is_file()):
            data = f.read_bytes()
            blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
            blob.parent.mkdir(parents=True, exist_ok=True)
            blob.write_bytes(data)
            link = repo / "snapshots" / commit / f.relative_to(source)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(exist_ok=True)
    for ref, commit in refs.items():
        (repo / "refs" / ref).write_text(commit)
    return repo


if __name__ == "__main__":
    import time

    # import the (lazily loaded) classes first: import time is not build time
    from diffusers import (  # noqa: F401
        Flux2KleinPipeline,
        Flux2Pipeline,
        FluxPipeline,
        StableDiffusion3Pipeline,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
    )
    from transformers import CLIPTextModel, Mistral3ForConditionalGeneration, Qwen3ForCausalLM, T5EncoderModel  # noqa: F401

    torch.set_num_threads(1)
    for name, build in PIPES.items():
        t0 = time.perf_counter()
        pipe = build()
        t1 = time.perf_counter()
        s, kw = SIZE[name], CALL_KWARGS[name]
        outs = {}
        for output_type in ("latent", "pt"):
            t2 = time.perf_counter()
            out = pipe(
                prompt="a photo of a cat", num_inference_steps=2, height=s, width=s, output_type=output_type,
                generator=torch.Generator().manual_seed(0), **kw,
            ).images  # fmt: skip
            outs[output_type] = (tuple(out.shape), f"{time.perf_counter() - t2:.3f}s")
        print(f"{name:6s} build {t1 - t0:.2f}s  latent {outs['latent']}  pt {outs['pt']}")
