"""The machinery: what the lessons stand on but do not teach.

Choosing the device and seeding (`runtime`), checkpoint files (`checkpoint`), the training
state a checkpoint holds and the bookkeeping that resuming and torchrun need (`training`),
several processes (`distributed`), CUDA graphs (`cuda_graphs`), reusing finished runs
(`run_cache`), figures (`plots`), model families by name (`families`), torchvision's ViT
(`torchvision_compat`), shipped trained weights (`pretrained`), small file helpers (`files`)
and every error class (`errors`). The lessons import what they need of it through
`from vit_lib import ...`; read it when you want to know how, not to learn the ViT. It never
imports the command-line tools (`vit_lib.cli`) or the classroom tools (`vit_lib.classroom`).
"""
