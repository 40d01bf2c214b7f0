"""Can a readout learn where the transfer-cube cube is from cam_high at the reset, under direct
supervision? The diagnostic of docs/experiments/2026-11-25-localization-readouts.md, not a test.

The label is privileged (the cube's x, y from the simulator); 50 training seeds (0..49, those of
the reference demos), 40 unseen seeds (1000..1039). Readouts of the policy's own modules (tiny
fused vision tower, projector, tiny Llama, L1 regression head), cam_high the only camera, no proprio:

- ``tower``, ``projector``, ``llm_patches``: a per-position linear map (no attention, no pooling)
  of the tower's patch features, of the projected patch tokens, or of the LLM's final hidden
  states at the patch positions;
- ``pool``: the LLM's final patch states averaged, then the L1 regression head;
- ``oft``: the policy's path: the all-zero action slots attend to the patches, then the head.

    python docs/experiments/localization_readout.py --readout tower --crop-scale 0.9 --seed 1
    python docs/experiments/localization_readout.py --readout oft --tiny-vision efficientnet_lite0 --steps 2000
"""

import argparse
import time

import numpy as np
import torch
from torch import nn

from oft_policy.model import OFTConfig, build_model, build_tokenizer
from oft_policy.model.config import TINY_VISIONS
from oft_policy.model.preprocess import preprocess_images, tokenize_prompts
from oft_sim.simulator import AlohaSim

IMAGE_SIZE = 112


def reset_views(seeds, render_size=(96, 128)):
    sim = AlohaSim(image_size=render_size)
    images, positions = [], []
    for seed in seeds:
        sim.reset(seed)
        images.append(sim.render()["cam_high"])
        positions.append(sim.physics.named.data.qpos["red_box_joint"][:2].copy())
    return images, np.array(positions, dtype=np.float32)


def build_readout(kind: str, layers: int, width: int, seed: int, tiny_vision: str = "vit"):
    """(module to train, predict): predict maps [B, 1, 6, S, S] pixel values to [B, 2] normalized positions."""
    pretrained = tiny_vision != "vit"  # ImageNet weights stay frozen, as in the transfer-cube recipe
    config = OFTConfig(backbone="tiny", chunk_size=1, action_dim=2, joint_names=("x", "y"), camera_names=("cam_high",),
                       use_proprio=False, use_film=False, image_size=IMAGE_SIZE, finetune="full", freeze_vision=pretrained,
                       tiny_vision=tiny_vision,
                       tiny_llm_layers=layers, tiny_llm_hidden=width, tiny_llm_heads=max(2, width // 64),
                       head_hidden_dim=64)
    model = build_model(config, seed=seed)
    ids, mask = tokenize_prompts(build_tokenizer(config), ["transfer the cube"], config.prompt_template)
    patches = model.vision_backbone.num_patches

    def prompt(pv):
        return ids.expand(len(pv), -1), mask.expand(len(pv), -1)

    def llm_patch_states(pv):
        embeds, valid = model._prefix(pv, *prompt(pv), None)
        return model._run_llm(embeds, valid, embeds.shape[1])[:, 1:1 + patches]  # after BOS

    if kind == "oft":
        return model, lambda pv: model(pv, *prompt(pv))[:, 0]
    if kind == "pool":
        pooled = lambda pv: llm_patch_states(pv).mean(1, keepdim=True).expand(-1, config.num_action_tokens, -1)
        return model, lambda pv: model.action_head(pooled(pv))[:, 0]
    features, feature_width = {
        "tower": (lambda pv: model.vision_backbone(pv[:, 0]), model.vision_backbone.embed_dim),
        "projector": (lambda pv: model.projector(model.vision_backbone(pv[:, 0])), config.tiny_llm_hidden),
        "llm_patches": (llm_patch_states, config.tiny_llm_hidden),
    }[kind]
    head = nn.Sequential(nn.Linear(feature_width, 16), nn.GELU(), nn.Flatten(), nn.Linear(16 * patches, 2))
    return nn.ModuleList([model, head]), lambda pv: head(features(pv))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readout", choices=("tower", "projector", "llm_patches", "pool", "oft"), default="tower")
    parser.add_argument("--crop-scale", type=float, default=1.0, help="training random crop area (0.9 = the reference recipe)")
    parser.add_argument("--llm-layers", type=int, default=2)
    parser.add_argument("--llm-width", type=int, default=64, help="tiny LLM hidden size (heads: width / 64, at least 2)")
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--tiny-vision", choices=TINY_VISIONS, default="vit",
                        help="vision of the tiny backbone (efficientnet_lite0: ImageNet features, frozen)")
    parser.add_argument("--seed", type=int, default=1, help="initialization seed (seed 0 happens to leave even the tower readout stuck)")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    train_images, train_xy = reset_views(range(50))
    test_images, test_xy = reset_views(range(1000, 1040))
    mean, std = train_xy.mean(0), train_xy.std(0)
    targets = torch.from_numpy((train_xy - mean) / std)
    module, predict = build_readout(args.readout, args.llm_layers, args.llm_width, args.seed, args.tiny_vision)
    optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=args.lr)
    generator = torch.Generator().manual_seed(0)

    def pixels(images, train):
        return torch.stack([preprocess_images([image], IMAGE_SIZE, args.crop_scale, train=train, generator=generator)
                            for image in images])

    def error_cm(images, xy):
        with torch.no_grad():
            guess = predict(pixels(images, False)).numpy() * std + mean
        return np.linalg.norm(guess - xy, axis=1).mean() * 100

    started = time.time()
    for step in range(1, args.steps + 1):
        batch = torch.randint(0, len(train_images), (8,), generator=generator)
        loss = (predict(pixels([train_images[i] for i in batch], True)) - targets[batch]).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % max(1, args.steps // 5) == 0:
            print(f"step {step} ({time.time() - started:.0f} s): train seeds {error_cm(train_images, train_xy):.2f} cm, "
                  f"unseen seeds {error_cm(test_images, test_xy):.2f} cm", flush=True)
    print(f"blind (always the training mean): {np.linalg.norm(test_xy - mean, axis=1).mean() * 100:.2f} cm on the unseen seeds")


if __name__ == "__main__":
    main()
