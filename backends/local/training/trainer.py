"""The training loop: a LoRA on the SDXL UNet's attention projections.

Recipe (DreamBooth-LoRA, Ruiz et al. arXiv:2208.12242 + Hu et al.
arXiv:2106.09685; diffusers' ``train_dreambooth_lora_sdxl.py`` is the
reference implementation):

* the latents (VAE mean x scaling factor, the VAE in float32 "to avoid NaN
  losses" as the reference keeps it) and the text embeddings of every sample
  are computed once (:func:`encode`), after which the VAE and both text
  encoders are freed: the loop runs the UNet only;
* SDXL time ids ``[original h, original w, crop top, crop left, target h,
  target w]`` from each sample's true photo size and crop (:mod:`.dataset`);
* PEFT LoRA (rank ``r``, ``lora_alpha``) on ``to_q``/``to_k``/``to_v``/``to_out.0``
  of every attention block; the UNet is frozen in the compute dtype (bf16 on
  CUDA), the LoRA parameters are float32 and the forward runs under autocast;
* MSE at a uniformly drawn timestep of the base's noise schedule (its
  ``scheduler/scheduler_config.json``: scaled-linear betas 0.00085..0.012,
  1000 steps for SDXL) against the base's ``prediction_type`` target: the
  noise (``epsilon``) or the velocity ``sqrt(a) * noise - sqrt(1 - a) * x0``
  (``v_prediction``, = ``DDPMScheduler.get_velocity``);
* AdamW (fused on CUDA; bitsandbytes' 8-bit AdamW when asked and installed),
  gradient-norm clipping at 1.0;
* determinism: the LoRA init uses ``seed``; the sample order of epoch ``e`` is a
  permutation drawn from ``(seed, e)`` and the noise/timestep of step ``s``
  come from a generator seeded with ``(seed, s)``, so a resumed run draws
  exactly what an uninterrupted one would;
* host syncs only every ``log_every`` steps (loss read-out) and at checkpoints.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ....soul import progress as prog
from . import checkpoint as ckpt

#: UNet modules the LoRA adapts.
TARGET_MODULES = ("to_q", "to_k", "to_v", "to_out.0")
#: SDXL's training noise schedule (scheduler_config.json of stabilityai/stable-diffusion-xl-base-1.0).
SDXL_SCHEDULE = {"beta_start": 0.00085, "beta_end": 0.012, "num_train_timesteps": 1000}


def default_steps(samples: int, batch_size: int = 1) -> int:
    """Training steps for ``samples`` accepted photos: a budget of 40 training
    samples per photo, at least 400 and at most 1600 (20 photos -> 800, 80 ->
    1600), divided by the batch size (rounded up): the same number of samples
    seen whatever the batch."""
    budget = int(min(1600, max(400, 40 * samples)))
    return -(-budget // max(1, int(batch_size)))


#: Default batch size on CUDA. Measured on an H200 (SDXL, 1024 px, rank 16,
#: bf16 + gradient checkpointing, ``benchmarks/bench_train.py``): batch 1
#: 1.05 s/step, batch 4 0.91 s/step, i.e. 3.5x the samples per second at
#: 8 GB peak, so the default 800 samples of 20 photos take ~3 min, not ~14.
CUDA_BATCH_SIZE = 4


@dataclass
class TrainSettings:
    """Training settings; defaults fit SDXL at 1024 px.

    Attributes:
        rank: LoRA rank r; alpha: LoRA alpha (default = rank, i.e. scale 1).
        steps: optimizer steps (None: :func:`default_steps` of the photo count
            and the batch size).
        learning_rate: AdamW learning rate.
        resolution: bucket area side, px (multiple of 64).
        seed: seeds the LoRA init, the sample order and the noise.
        batch_size: samples per step (a step's samples share one aspect bucket);
            None: :data:`CUDA_BATCH_SIZE` on CUDA, 1 elsewhere.
        mixed_precision: ``auto`` (CUDA: bf16 where supported else fp16; CPU: no),
            ``bf16``, ``fp16`` or ``no``.
        gradient_checkpointing: recompute activations in the backward (less memory, ~25 % slower).
        use_8bit_adam: bitsandbytes AdamW8bit (CUDA, when installed).
        flip: also train on mirrored crops (off, as the reference's ``--random_flip``).
        checkpoint_every: write a resumable checkpoint every N steps (0: never).
        log_every: read the loss (a host sync) and report every N steps.
        device: ``cuda``, ``cpu``... (default: CUDA when available).
        channels_last: UNet in channels-last memory format (CUDA).
    """

    rank: int = 16
    alpha: float | None = None
    steps: int | None = None
    learning_rate: float = 1e-4
    resolution: int = 1024
    seed: int = 0
    batch_size: int | None = None
    mixed_precision: str = "auto"
    gradient_checkpointing: bool = True
    use_8bit_adam: bool = False
    flip: bool = False
    checkpoint_every: int = 100
    log_every: int = 10
    device: str | None = None
    channels_last: bool = True

    def resolved_batch_size(self) -> int:
        """The batch size in use (see ``batch_size``)."""
        if self.batch_size:
            return int(self.batch_size)
        return CUDA_BATCH_SIZE if self.resolved_device().startswith("cuda") else 1

    def resolved_device(self) -> str:
        import torch

        return self.device or ("cuda" if torch.cuda.is_available() else "cpu")

    def compute_dtype(self):
        """torch dtype of the frozen weights and the autocast."""
        import torch

        mp = self.mixed_precision
        if mp == "auto":
            dev = self.resolved_device()
            if not dev.startswith("cuda"):
                return torch.float32
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        try:
            return {"bf16": torch.bfloat16, "fp16": torch.float16, "no": torch.float32}[mp]
        except KeyError:
            raise ValueError(f"mixed_precision must be auto, bf16, fp16 or no, not {mp!r}") from None


@dataclass
class Encoded:
    """The cached training set (on the training device).

    Attributes:
        latents: per sample ``[1, 4, h/8, w/8]`` (scaled VAE mean).
        prompt_embeds: per sample ``[1, 77, 2048]`` (both CLIP encoders' penultimate states).
        pooled: per sample ``[1, 1280]``; time_ids: per sample ``[1, 6]``.
        buckets: per sample ``(width, height)``.
    """

    latents: list
    prompt_embeds: list
    pooled: list
    time_ids: list
    buckets: list[tuple[int, int]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.latents)


@dataclass
class FitResult:
    """Outcome of :func:`fit`.

    Attributes:
        lora_state: PEFT state dict (``<module>.lora_A.weight`` ...), float32 on CPU.
        steps: total steps trained; resumed_from: step the run started at (0: fresh).
        loss_curve: mean loss per ``log_every`` steps; final_loss: last entry.
        seconds: wall time of this process's part; seconds_per_step: of the steps run here.
    """

    lora_state: dict
    steps: int
    resumed_from: int
    loss_curve: list[float]
    final_loss: float
    seconds: float
    seconds_per_step: float


def encode(pipe, samples, device: str, dtype, progress=None, interrupt=None) -> Encoded:
    """Latents and text embeddings of every sample, computed once.

    Args:
        pipe: a diffusers ``StableDiffusionXLPipeline`` (its VAE and text encoders are used).
        samples: :class:`~.dataset.Sample` list.
        dtype: dtype the cached tensors are kept in (the compute dtype).
    """
    import torch

    vae = pipe.vae.to(device=device, dtype=torch.float32)  # float32 whatever the compute dtype (the recipe's)
    for m in (pipe.text_encoder, pipe.text_encoder_2):
        m.to(device)
    vae_dtype = torch.float32
    texts: dict[str, tuple] = {}
    out = Encoded([], [], [], [])
    with torch.no_grad():
        for i, s in enumerate(samples):
            prog.check(interrupt, f"encoding sample {i + 1}/{len(samples)}")
            x = torch.from_numpy(np.ascontiguousarray(s.rgb)).permute(2, 0, 1)[None].to(device, vae_dtype) / 127.5 - 1
            lat = vae.encode(x).latent_dist.mean * vae.config.scaling_factor
            if s.caption not in texts:
                pe, _, pooled, _ = pipe.encode_prompt(s.caption, device=device, num_images_per_prompt=1,
                                                      do_classifier_free_guidance=False)
                texts[s.caption] = (pe.to(dtype), pooled.to(dtype))
            pe, pooled = texts[s.caption]
            w, h = s.size
            oh, ow = s.original_size or (h, w)
            top, left = s.crop_top_left
            out.latents.append(lat.to(dtype))
            out.prompt_embeds.append(pe)
            out.pooled.append(pooled)
            out.time_ids.append(torch.tensor([[oh, ow, top, left, h, w]], device=device, dtype=dtype))
            out.buckets.append((w, h))
            prog.report(progress, (i + 1) / len(samples), f"encoded sample {i + 1}/{len(samples)}")
    return out


def alphas_cumprod(beta_start: float = 0.00085, beta_end: float = 0.012, num_train_timesteps: int = 1000):
    """``[T]`` float32 cumulative alphas of the scaled-linear schedule."""
    import torch

    betas = torch.linspace(beta_start ** 0.5, beta_end ** 0.5, num_train_timesteps, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, 0).float()


#: Prediction types :func:`fit` trains (``scheduler_config.json`` ``prediction_type``).
PREDICTION_TYPES = ("epsilon", "v_prediction")


def base_schedule(scheduler_config) -> tuple["object", str]:
    """``([T] alphas_cumprod, prediction_type)`` of a base's scheduler config
    (``pipe.scheduler.config``), through diffusers' ``DDPMScheduler`` as the
    reference builds its noise scheduler.

    Raises:
        ValueError: a prediction type other than :data:`PREDICTION_TYPES`.
    """
    from diffusers import DDPMScheduler

    sched = DDPMScheduler.from_config(dict(scheduler_config))
    pt = sched.config.prediction_type
    if pt not in PREDICTION_TYPES:
        raise ValueError(f"the base's scheduler predicts {pt!r}; training supports {', '.join(PREDICTION_TYPES)}")
    return sched.alphas_cumprod.float(), pt


def training_target(latents, noise, alphas: "object", prediction_type: str):
    """What the UNet is trained to output: ``noise`` (epsilon) or the velocity
    ``sqrt(a) * noise - sqrt(1 - a) * latents`` (v_prediction); ``alphas`` are
    the ``[B, 1, 1, 1]`` alphas_cumprod of the drawn timesteps."""
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        return alphas.sqrt() * noise - (1 - alphas).sqrt() * latents
    raise ValueError(f"unknown prediction type {prediction_type!r}")


def _order(n: int, batch: int, seed: int, step: int, buckets: list) -> list[int]:
    """Sample indices of ``step``: walk a per-epoch permutation; a batch takes
    the first sample's bucket and fills up with others of the same bucket."""
    per_epoch = max(1, n // batch)
    epoch, pos = divmod(step, per_epoch)
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    first = int(perm[pos * batch % n])
    same = [int(i) for i in perm if buckets[i] == buckets[first] and i != first]
    return ([first] + same)[:batch]


def fingerprint(settings: TrainSettings, steps: int, extra: dict) -> str:
    """sha256 of what determines the result (settings, steps, data, base)."""
    d = asdict(settings)
    for k in ("checkpoint_every", "log_every", "device"):
        d.pop(k)
    d["steps"] = steps
    return hashlib.sha256(json.dumps({"settings": d, **extra}, sort_keys=True, default=str).encode()).hexdigest()


def _optimizer(params, settings: TrainSettings, device: str):
    import torch

    if settings.use_8bit_adam:
        try:
            import bitsandbytes as bnb

            return bnb.optim.AdamW8bit(params, lr=settings.learning_rate, weight_decay=1e-2)
        except ImportError:
            pass  # falls back to torch AdamW (the result records which one ran)
    return torch.optim.AdamW(params, lr=settings.learning_rate, weight_decay=1e-2,
                             fused=device.startswith("cuda"))


def add_lora(unet, settings: TrainSettings) -> list:
    """Add the PEFT LoRA to ``unet`` (frozen), LoRA params float32. Returns the trainable params."""
    import torch
    from peft import LoraConfig

    unet.requires_grad_(False)
    torch.manual_seed(settings.seed)
    unet.add_adapter(LoraConfig(r=settings.rank, lora_alpha=settings.alpha or settings.rank,
                                init_lora_weights="gaussian", target_modules=list(TARGET_MODULES)))
    params = [p for p in unet.parameters() if p.requires_grad]
    for p in params:
        p.data = p.data.float()
    return params


def fit(unet, data: Encoded, settings: TrainSettings, steps: int, *, schedule=None,
        prediction_type: str = "epsilon", checkpoint_path: str | Path | None = None, resume: bool = False, fingerprint_: str = "",
        progress: prog.ProgressFn | None = None, interrupt: prog.InterruptFn | None = None) -> FitResult:
    """Train the LoRA on ``unet`` for ``steps`` optimizer steps.

    Args:
        unet: a diffusers ``UNet2DConditionModel`` in the compute dtype on the device.
        data: the cached set (:func:`encode`).
        schedule: ``[T]`` alphas_cumprod (default :data:`SDXL_SCHEDULE`; :func:`base_schedule`).
        prediction_type: ``epsilon`` or ``v_prediction`` (the base's; :func:`training_target`).
        checkpoint_path: where checkpoints go (every ``settings.checkpoint_every`` steps).
        resume: continue from the checkpoint at ``checkpoint_path`` when there is one.
        fingerprint_: identity of the run, checked on resume (:func:`fingerprint`).
        progress: ``progress(done / steps, "step N/M loss L ETA ...")`` after every step.

    Raises:
        Interrupted: ``interrupt()`` returned True (checked before every step).
        CheckpointError: the checkpoint belongs to another run.
    """
    import torch
    import torch.nn.functional as F
    from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict

    device = settings.resolved_device()
    dtype = settings.compute_dtype()
    cuda = device.startswith("cuda")
    params = add_lora(unet, settings)
    if settings.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    if cuda and settings.channels_last:
        unet.to(memory_format=torch.channels_last)
    unet.train()
    opt = _optimizer(params, settings, device)
    scaler = torch.amp.GradScaler("cuda") if cuda and dtype == torch.float16 else None
    acp = (schedule if schedule is not None else alphas_cumprod(**SDXL_SCHEDULE)).to(device)
    T = acp.shape[0]
    start, curve, acc_sum, acc_n = 0, [], 0.0, 0
    if resume and checkpoint_path:
        state = ckpt.load(checkpoint_path, fingerprint_)
        if state is not None:
            set_peft_model_state_dict(unet, {k: v.to(device) for k, v in state["lora"].items()})
            for p in params:
                p.data = p.data.float()
            opt.load_state_dict(state["optimizer"])
            start, curve = int(state["step"]), list(state["loss_curve"])
            acc_sum, acc_n = float(state["acc_sum"]), int(state["acc_n"])
            prog.report(progress, start / steps, f"resumed from step {start}/{steps}")
    acc = torch.zeros((), device=device)
    t0 = time.perf_counter()
    last_loss = curve[-1] if curve else float("nan")
    n = len(data)
    for step in range(start, steps):
        prog.check(interrupt, f"training step {step + 1}/{steps}")
        idx = _order(n, settings.resolved_batch_size(), settings.seed, step, data.buckets)
        lat = torch.cat([data.latents[i] for i in idx])
        pe = torch.cat([data.prompt_embeds[i] for i in idx])
        pooled = torch.cat([data.pooled[i] for i in idx])
        tids = torch.cat([data.time_ids[i] for i in idx])
        g = torch.Generator(device=device).manual_seed(settings.seed * 1_000_003 + step)
        noise = torch.randn(lat.shape, generator=g, device=device, dtype=torch.float32)
        t = torch.randint(0, T, (lat.shape[0],), generator=g, device=device)
        a = acp[t].view(-1, 1, 1, 1)
        noisy = (a.sqrt() * lat.float() + (1 - a).sqrt() * noise).to(dtype)
        if cuda and settings.channels_last:
            noisy = noisy.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type="cuda" if cuda else "cpu", dtype=dtype, enabled=dtype != torch.float32):
            pred = unet(noisy, t, pe, added_cond_kwargs={"text_embeds": pooled, "time_ids": tids}).sample
        loss = F.mse_loss(pred.float(), training_target(lat.float(), noise, a, prediction_type))
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
        opt.zero_grad(set_to_none=True)
        acc += loss.detach()
        acc_n += 1
        done = step + 1
        if done % settings.log_every == 0 or done == steps:
            last_loss = (acc_sum + float(acc)) / acc_n  # host sync: once per log_every steps
            curve.append(round(last_loss, 6))
            acc.zero_()
            acc_sum, acc_n = 0.0, 0
        elapsed = time.perf_counter() - t0
        eta = elapsed / (done - start) * (steps - done)
        prog.report(progress, done / steps, f"step {done}/{steps} loss {last_loss:.4f} ETA {_fmt(eta)}")
        if checkpoint_path and settings.checkpoint_every and done % settings.checkpoint_every == 0 and done < steps:
            acc_sum += float(acc)
            acc.zero_()
            ckpt.save(checkpoint_path, {
                "fingerprint": fingerprint_, "step": done, "loss_curve": curve, "acc_sum": acc_sum, "acc_n": acc_n,
                "lora": {k: v.detach().cpu() for k, v in get_peft_model_state_dict(unet).items()},
                "optimizer": opt.state_dict(),
            })
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    state = {k: v.detach().float().cpu() for k, v in get_peft_model_state_dict(unet).items()}
    final = curve[-1] if curve else float("nan")
    return FitResult(state, steps, start, curve, final, seconds, seconds / max(1, steps - start))


def _fmt(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    m, s = divmod(int(seconds + 0.5), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"
