"""Training InstanceHMR on synthetic multi-person occlusion scenes rendered with the app's own body model.

Modules: ``poses`` (pose sampler with joint limits, GMM pose prior), ``bodies`` (body model access and body-part
labels), ``render`` (painter's raster with an instance-id channel, backgrounds), ``scene`` (scene composer and
per-person ground truth), ``targets`` (centre/joint heatmaps, kp_coords), ``dataset`` (shards and the generation
command), ``losses`` (the paper's nine terms), ``train`` (trainer CLI), ``metrics``/``eval`` (evaluation),
``demo`` (demo clip), ``ablation`` (Table-4-style runs). Conventions are documented in ``train/README.md``.
"""
