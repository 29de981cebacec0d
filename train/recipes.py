"""Named training recipes. A recipe is a dict of argument defaults; CLI flags override it."""

# What the original study reported for each architecture, and on what (README's last column).
STUDY_REPORTED: dict[str, str] = {"baseline": "86.84% (study's own split)",
                                  "resnet50": "95.10% (Roboflow set)"}

RECIPES: dict[str, dict] = {
    # The original study, exactly: ImageNet ResNet-50, only the last layer trained, SGD lr 0.01,
    # momentum 0.9, weight decay 1e-4, cross-entropy, 10 epochs, 224 px, no augmentation.
    "study": dict(model="resnet50", size=224, epochs=10, batch_size=32, optimizer="sgd", lr=0.01,
                  momentum=0.9, weight_decay=1e-4, label_smoothing=0.0, schedule="constant",
                  warmup_epochs=0, freeze="all-but-head", augment=False),
    # This project's ResNet-50 recipe: deeper fine-tuning (layer3, layer4 + head) with augmentation
    # that models scanner/export differences, label smoothing, warm-up + cosine schedule.
    "best": dict(model="resnet50", size=160, epochs=3, batch_size=32, optimizer="sgd", lr=0.02,
                 momentum=0.9, weight_decay=1e-4, label_smoothing=0.1, schedule="cosine",
                 warmup_epochs=0.2, freeze="stem+layer2", augment=True),
    # The small CNN from scratch (its per-epoch history: logs/baseline/).
    "baseline": dict(model="baseline", size=160, epochs=80, batch_size=64, optimizer="adamw",
                     lr=3e-3, momentum=0.9, weight_decay=5e-4, label_smoothing=0.1,
                     schedule="cosine", warmup_epochs=1, freeze="none", augment=True),
    # Teach the shipped ResNet-50 to read the lesion: layer2..4 and head fine-tuned (batch-norm
    # statistics kept) with counterfactual no-tumour scans balanced by control paintings, box
    # guidance on the last block's Layer-CAM and acquisition/contrast augmentation; the last
    # epoch is kept (docs/lesion.md).
    "lesion": dict(model="resnet50", size=192, epochs=3, batch_size=32, optimizer="sgd", lr=0.003,
                   momentum=0.9, weight_decay=1e-4, label_smoothing=0.1, schedule="cosine",
                   warmup_epochs=0.1, freeze="stem+layer1", augment=True, freeze_bn=1,
                   init="checkpoints/resnet50.safetensors", counterfactual=0.3, paint_share=0.6, notumor_repeat=2,
                   guidance=1.0, acquisition=1, grow=0.04, keep="last"),
    # The cached-tail stage (train.dilate): the shipped ResNet-50's last stage dilated and
    # fine-tuned with the head on cached layer3 maps, mirrored at random; the last epoch is kept.
    # --outside-weight, --train-blocks layer3-4 and --finer-weight add the head-mask penalties.
    "dilate": dict(stage="tail", init="checkpoints/resnet50.safetensors", epochs=3, batch_size=32,
                   lr=0.005, momentum=0.9, weight_decay=1e-4, label_smoothing=0.1, augment=False,
                   dilate=1, train_blocks="layer4", outside_weight=0.0, finer_weight=0.0,
                   tolerance=0.02),
    # The same signals for the small CNN, fine-tuned from the shipped baseline.
    "lesion-baseline": dict(model="baseline", size=160, epochs=12, batch_size=64, optimizer="adamw",
                            lr=1e-3, momentum=0.9, weight_decay=5e-4, label_smoothing=0.1,
                            schedule="cosine", warmup_epochs=0.5, freeze="none", augment=True,
                            freeze_bn=0, init="checkpoints/baseline.safetensors",
                            counterfactual=0.3, paint_share=0.6, notumor_repeat=2, guidance=1.0, acquisition=1,
                            grow=0.04, keep="last"),
}
