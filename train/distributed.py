"""Data-parallel training on PyTorch's own engine: torchrun starts one process per GPU
(or CPU worker), torch.distributed connects them (NCCL on GPUs, gloo on CPU), and
DistributedDataParallel averages the gradients. One entry point for any number of
processes:

    python3 train/train.py ...                               # one process
    torchrun --nproc-per-node 8 train/train.py ...           # eight, same global batch

The global batch and the learning-rate schedule do not depend on the number of
processes: every rank draws the same global batch and keeps its own slice; rank 0
decides when a time-budgeted phase ends, logs, exports and evaluates.
"""
import os

import torch
import torch.distributed as dist


class Dist:
    def __init__(self):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.enabled = self.world > 1
        if torch.cuda.is_available():
            self.device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(self.device)
        else:
            self.device = torch.device("cpu")
        if self.enabled:
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")

    @property
    def main(self):
        return self.rank == 0

    def rows(self, global_batch):
        """This rank's rows of a global batch (which must divide evenly)."""
        if global_batch % self.world:
            raise SystemExit(f"the global batch {global_batch} does not split over {self.world} processes")
        per = global_batch // self.world
        return slice(self.rank * per, (self.rank + 1) * per)

    def wrap(self, module):
        """DistributedDataParallel around a module whose parameters all get gradients
        (the others have requires_grad off); the module itself with one process."""
        if not self.enabled:
            return module
        ids = [self.local_rank] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(module, device_ids=ids)

    def agree(self, value):
        """Rank 0's float, on every rank (when a wall-clock phase ends, its LR)."""
        if not self.enabled:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.broadcast(t, 0)
        return float(t.item())

    def barrier(self):
        if self.enabled:
            dist.barrier()

    def close(self):
        if self.enabled:
            dist.destroy_process_group()
