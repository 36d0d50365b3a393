"""The config schema: every key with its default. Experiment files start from `get_config()`
(through experiments/base.py) and change what differs.

The returned config is locked: an override of a key that does not exist fails and names it.
Optional values are typed placeholders so command-line overrides parse.
"""

import ml_collections
from ml_collections import config_dict


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0

    config.dataset = ml_collections.ConfigDict(
        dict(
            name="shapes",  # shapes | image_folder | a TFDS name: celeb_a, mnist, cifar10, ...
            image_size=64,
            crop="none",  # center148 | nvae | none (see vae_jax/data/pipeline.py)
            data_dir=config_dict.placeholder(str),  # TFDS data_dir (default ~/tensorflow_datasets)
            manual_dir=config_dict.placeholder(str),  # default <data_dir>/downloads/manual
            # the folder of name="image_folder", or of mnist / fashion_mnist / kmnist idx files
            path=config_dict.placeholder(str),
            # 1 or 3; None: the data's own (TFDS image feature, or an image folder's first file)
            channels=config_dict.placeholder(int),
            random_flip=False,  # random horizontal flips of training images
            dynamic_binarization=False,  # resample binary pixels from intensities (MNIST)
            shuffle_buffer=10_000,
            cache=False,  # keep preprocessed images in memory after the first epoch
        )
    )

    config.model = ml_collections.ConfigDict(
        dict(
            kind="conv",  # conv | mlp | hierarchical | ladder_mlp (vae_jax/models/)
            latent_dim=10,  # conv, mlp
            # conv: one stride-2 stage per entry; hierarchical: the width at each resolution
            channels=(32, 32, 64, 64),
            # dense layers between the conv stack and the latent (mlp: all layers; ladder_mlp:
            # the layers between x and z_1)
            hidden=(256,),
            posterior="diag",  # diag | full (conv, mlp)
            # bernoulli | gaussian | gaussian_learned | gaussian_optimal | discretized_logistic |
            # discretized_mix_logistic
            likelihood="bernoulli",
            gaussian_scale=0.1,  # σ of the fixed-scale gaussian likelihood
            mixture_components=10,  # discretized_mix_logistic: logistics per pixel
            # hierarchical: descending resolutions (the first the image size), encoder blocks and
            # decoder blocks (= latent groups) at each, latent channels per group, and the
            # residual blocks' inner width over the stream's
            resolutions=(32, 16, 8, 4, 1),
            blocks=(2, 2, 2, 2, 1),
            latent_channels=8,
            bottleneck_ratio=0.25,
            latent_dims=(100, 50),  # ladder_mlp: latents per stochastic layer, bottom (z_1) up
        )
    )

    config.objective = ml_collections.ConfigDict(
        dict(
            # beta_vae | annealed | beta_tcvae | factor_vae | dip_vae_i | dip_vae_ii: the losses
            # are in vae_jax/objectives.py
            kind="beta_vae",
            beta=1.0,  # beta_vae: the KL weight; beta_tcvae: loss + (β − 1)·TC
            kl_warmup_steps=0,  # the KL weight rises linearly from 0 (all kinds but annealed)
            free_bits=0.0,  # nats per latent dimension (diag posterior only)
            # annealed: loss γ|KL − C| with C rising linearly from 0 to `capacity` nats
            capacity=config_dict.placeholder(float),
            capacity_steps=100_000,
            capacity_gamma=1000.0,
            # beta_tcvae: the batch estimator of the aggregate posterior, mss (minibatch-stratified)
            # or mws (minibatch-weighted), and its dataset size N (None: the train split's size,
            # fixed at the run's start)
            tc_estimator="mss",
            dataset_size=config_dict.placeholder(int),
            factor_vae_gamma=10.0,  # factor_vae: the weight of the discriminator's TC estimate
            dip_lambda_od=1.0,  # dip_vae_i / dip_vae_ii: off-diagonal weight ...
            dip_lambda_d=10.0,  # ... and diagonal weight
            # > 1: train on the importance-weighted bound with this many samples (Burda et al.
            # 2016; beta_vae with β = 1 and no warm-up or free bits)
            iwae_samples=1,
        )
    )

    config.train = ml_collections.ConfigDict(
        dict(
            batch_size=64,
            num_steps=100_000,
            learning_rate=1e-3,
            optimizer="adam",  # adam | adamax
            lr_schedule="constant",  # constant | cosine (decays to 0 at schedule_steps)
            warmup_steps=0,  # linear learning-rate warm-up
            # Length of the learning-rate schedule; None: num_steps at the run's start. Recorded
            # in config.json, so training longer on resume never changes a scheduled rate.
            schedule_steps=config_dict.placeholder(int),
            # Exponential moving average of the parameters, used by evaluation, figures and
            # load_run: decay min(ema_decay, (1 + t) / (10 + t)) at step t (0: no averaging).
            ema_decay=0.999,
            grad_clip_norm=config_dict.placeholder(float),
            # Skip (do not apply) updates whose gradient norm exceeds this, like VDVAE (None: off).
            skip_grad_norm=config_dict.placeholder(float),
            # Non-finite losses or gradients skip the update; this many in a row stop the run.
            max_consecutive_skips=100,
            compute_dtype="float32",  # float32 | bfloat16 (activations and matmuls; f32 params)
            log_every=100,
            eval_every=5_000,
            checkpoint_every=5_000,
            keep_checkpoints=3,  # the last few; the best by validation ELBO is kept apart
            keep_every=config_dict.placeholder(int),  # also keep every checkpoint at multiples
        )
    )

    config.eval = ml_collections.ConfigDict(
        dict(
            batch_size=256,
            # Test examples of the periodic evaluation during training (None: the whole split).
            num_examples=config_dict.placeholder(int),
            # --mode=analyze: examples for ELBO, active units, disentanglement (None: all) ...
            analysis_examples=config_dict.placeholder(int),
            # ... and for the IWAE bound with iwae_samples importance samples, iwae_chunk at a time.
            iwae_examples=1_000,
            iwae_samples=1_000,
            iwae_chunk=100,
            # Training points (FactorVAE: votes) of the BetaVAE and FactorVAE scores on datasets
            # with factors; half as many evaluation points, FactorVAE's variances from as many
            # codes. None: disentanglement_lib's 10,000 (each point encodes 64 or 128 rendered
            # images, 2.9 million in all: set a few hundred for smoke runs).
            factor_score_points=config_dict.placeholder(int),
            # MIG, DCI, SAP, modularity and explicitness on datasets with factors (see
            # vae_jax/evaluation/disentanglement.py). factor_metric_points N: fitted on the codes
            # of N rendered images of uniformly drawn factors, scored on N / 2 more, MIG and
            # modularity of the N (disentanglement_lib's: 10,000); None: the test split's codes,
            # fitted on the first half, scored on the second, MIG and modularity of all.
            factor_metric_points=config_dict.placeholder(int),
            # DCI's per-factor classifier: extra_trees (fast) or gradient_boosting (the library's
            # GradientBoostingClassifier(), 150x slower: 5 minutes on 10,000 shapes codes).
            dci_predictor="extra_trees",
            # Logistic regression of explicitness and the BetaVAE score: liblinear one-vs-rest
            # (what the library's LogisticRegression() was) or lbfgs (multinomial).
            logistic_solver="liblinear",
            num_figures=64,
            # FID and KID (vae_jax.fid) of this many samples per temperature, and of as many test
            # reconstructions, against as many test images (fewer when the split is smaller).
            # 10,000 or 50,000 for the common protocol; 0 leaves them out. None: 0 for Bernoulli
            # or one-channel data, else 500 on CPU (minutes) and 10,000 on an accelerator.
            fid_samples=config_dict.placeholder(int),
            fid_temperatures=(1.0,),
        )
    )
    config.lock()
    return config
