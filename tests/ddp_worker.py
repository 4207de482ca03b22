"""One rank of the 2-process gloo test (run as a plain script, so no test runner state leaks in).

python tests/ddp_worker.py RANK WORLD INIT_FILE DATA_ROOT OUT
"""

import sys
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from capsviz.data import load_mnist  # noqa: E402
from capsviz.model import CapsNetConfig  # noqa: E402
from capsviz.speed.distributed import Distributed  # noqa: E402
from capsviz.train import TrainConfig, train  # noqa: E402

TINY = CapsNetConfig(  # conftest.TINY_CAPSNET, repeated: this script imports no test code
    conv_channels=16, primary_types=4, decoder_hidden=(32, 64)
)

if __name__ == "__main__":
    rank, world, init_file, root, out = int(sys.argv[1]), int(sys.argv[2]), *sys.argv[3:6]
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        splits = load_mnist(root, train=True), load_mnist(root, train=False)
        config = TrainConfig(epochs=2, batch_size=32, lr=3e-3, device="cpu", eval_batch_size=20)
        result = train(*splits, out, config, model_config=TINY, ddp=Distributed(rank, world))
        weights = {k: v.contiguous() for k, v in result.model.state_dict().items()}
        save_file(weights, f"{out}/rank{rank}.safetensors")
    finally:
        dist.destroy_process_group()
